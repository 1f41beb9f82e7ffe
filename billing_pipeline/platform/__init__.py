"""What every room stands on: configuration, storage and lake paths, the FOCUS contract, text escaping
and streaming lookups."""
