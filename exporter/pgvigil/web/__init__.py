"""The bottom room: the HTTP server shared by the exporter and the sidecar, and its web config."""
