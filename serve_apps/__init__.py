"""Ray Serve applications and the Serve config files that deploy them."""
