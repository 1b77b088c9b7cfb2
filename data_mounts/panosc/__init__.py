"""The PaNOSC search API over the catalogue: filter parsing, SQL translation, record shapes.

``filters`` parses LoopBack filter JSON strictly (pure), ``sql`` turns it into SQLAlchemy
expressions on the catalogue tables, ``match`` filters included records, ``shapes`` renders
PaNOSC records and ``search`` runs find/count/get in a session; ``documents`` pages publications
and proposals (``proposals``: derived from the datasets' proposal ids) as one list of Documents.
``importer`` imports PaNOSC (and SciCat) files record by record.
"""
