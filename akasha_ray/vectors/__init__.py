"""The vector seam: stores that hold embeddings and answer nearest-neighbour queries."""
