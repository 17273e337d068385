"""Reading a data folder: the input contract, validation and quarantine, identity resolution, id maps."""
