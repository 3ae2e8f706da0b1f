"""The shared data layer: schema, sessions and the data-access functions web and workers both use."""
