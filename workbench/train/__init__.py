"""Training: the recipe (`trainer`), its callbacks, batch feeding and device defaults."""
