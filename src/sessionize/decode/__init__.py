"""Raw records to Events: field mapping and timestamp reading."""
