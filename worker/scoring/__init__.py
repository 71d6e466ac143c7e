"""DLC scoring engine: pure torch and numpy, no web framework and no database imports."""
