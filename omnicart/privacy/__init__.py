"""What the product does for customers' rights: erasure on request, deletion after a retention period."""
