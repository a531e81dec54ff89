"""The market-data service (``service``) and the feed engines read it through (``bus_feed``)."""
