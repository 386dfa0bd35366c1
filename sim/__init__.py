"""septet: sim."""
