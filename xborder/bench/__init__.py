"""The benchmark and quality harness: the whole pipeline measured the same way every time."""
