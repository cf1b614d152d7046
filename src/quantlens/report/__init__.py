"""Tables, figures and reports from run records."""
