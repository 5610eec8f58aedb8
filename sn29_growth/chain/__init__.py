"""Chain side of the validator and miner: the commitment format, the chain protocol and its bittensor adapter."""
