"""The Goldrush LLM-CDN: an LLM gateway with fingerprinted cache, single-flight and fallbacks."""
