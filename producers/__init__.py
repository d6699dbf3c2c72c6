"""CDR producers: a deterministic generator with fault injection, and its Kafka runner."""
