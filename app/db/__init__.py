"""Tables, engine and migrations. SQLite (WAL, foreign keys on) by default, PostgreSQL by URL."""

from app.db import models_anatomy as models_anatomy
from app.db import models_chain as models_chain
from app.db import models_dicom as models_dicom
from app.db import models_machine as models_machine
from app.db import models_planning as models_planning
from app.db import models_security as models_security
from app.db import models_signoff as models_signoff
