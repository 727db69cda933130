"""Models of the templating app."""
