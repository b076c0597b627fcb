"""Market history from outside the trading path: Binance public-data files and the exchange's REST history.

Pure code: which file holds what (`identify`), reading and checking its rows (`read_data_file`, `parse_klines`,
`parse_funding`), and the same checks for REST answers (`funding_from_rest`). Storing is `db.history`'s job.
An empty cell is unknown (NaN in bars, None in funding rates), never 0.
"""

from ats.data.files import (
    DataFile,
    Kind,
    UnknownFile,
    find_data_files,
    identify,
    parse_funding,
    parse_klines,
    read_data_file,
)
from ats.data.series import FundingRates, MalformedData, funding_from_rest, funding_hour

__all__ = [
    "DataFile",
    "FundingRates",
    "Kind",
    "MalformedData",
    "UnknownFile",
    "find_data_files",
    "funding_from_rest",
    "funding_hour",
    "identify",
    "parse_funding",
    "parse_klines",
    "read_data_file",
]
