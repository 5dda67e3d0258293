"""Data: reading interaction logs and catalogues in their formats and columns, checking them,
and turning a log into the sequences and splits everything above trains and scores on."""
