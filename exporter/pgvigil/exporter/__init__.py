"""The exporter: `pgvigil serve`, its scrape, /probe and discovery, and the collectors."""
