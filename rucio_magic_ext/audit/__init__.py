"""``rucio-magic audit RSE``: ``classes`` says how the three views differ (pure), ``views`` reads them, ``output``
writes the summary and the lists of Rucio's consistency tools, ``fix`` acts on request, ``command`` ties them up."""
