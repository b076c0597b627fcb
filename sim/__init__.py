"""The simulated Binance USDⓈ-M futures exchange (paper trading, demos, tests).

specs.py (contracts, filters, leverage brackets), market.py (synthetic or replayed market data),
engine.py (matching engine and account), faults.py (fault injection), server.py (REST + WebSocket on
Binance's paths, admin API under /sim/, SimServer / SimServerThread / SimControl). Run it with `ats sim serve`.
"""
