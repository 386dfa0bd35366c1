"""septet: tb."""
