"""Work that runs beside the requests: the sweeper."""
