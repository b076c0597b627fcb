-- One server, two databases: the trading state (ats) and Prefect's own (prefect).
CREATE DATABASE prefect;
