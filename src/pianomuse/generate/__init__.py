"""Generation over token ids: the REMI grammar, pure sampling functions, batched decoding."""
