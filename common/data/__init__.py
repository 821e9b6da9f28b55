"""(schema -> encoder) the public schema, reading and typing tables, the encoder built from the schema alone."""
