"""septet: septet."""
