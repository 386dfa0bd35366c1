"""septet: rtl."""
