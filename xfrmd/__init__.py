"""xfrmd — a fake Linux kernel for IPsec control planes."""
__version__ = "0.1.0"
