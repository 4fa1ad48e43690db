"""What the engine remembers: frame memories, banks, and the policies that choose between them."""
