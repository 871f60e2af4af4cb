"""Golden cases computed by the original code, checked through the same entry points users call."""
