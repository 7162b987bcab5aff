"""The workflow's Python: calendars, database extraction, tables, charts and the demo database.

Snakemake puts ``workflow/scripts`` on ``sys.path`` for ``script:`` jobs, so the thin scripts next to this
package import it directly; tests import it the same way.
"""

import logging

# What a job says: the job runner (sensorcharts.jobprocess) sends it to the job's log file.
log = logging.getLogger("sensorcharts")
