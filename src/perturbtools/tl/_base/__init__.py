from __future__ import annotations

from ..._labelled import LabelledData
from ..._predictions import Predictions, read_predictions, write_predictions
from ._capabilities import FineTunable, Generative
from ._inputs import EmbeddingInput
from ._model import PerturbationModel, table_from_state, table_state
from ._specs import ModelSpec, unpack_spec
