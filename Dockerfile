# The ats image: CLI, Prefect flows (run by a process worker), the monitor and the simulated exchange.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system ats && useradd --system --gid ats --create-home --home-dir /home/ats ats

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY ats ./ats
COPY db ./db
COPY flows ./flows
COPY tasks ./tasks
COPY monitor ./monitor
COPY cli ./cli
COPY sim ./sim
COPY prefect.yaml ./
RUN pip install -c constraints.txt .

# Where the services write: the data directory and PREFECT_HOME inside it, owned by ats. A new named volume mounted
# on /home/ats/data starts as a copy of this directory, ownership included (docker-compose.yml mounts one per service).
RUN install -d -o ats -g ats -m 0750 /home/ats/data /home/ats/data/prefect

USER ats
ENV ATS_DATA_DIR=/home/ats/data \
    PREFECT_HOME=/home/ats/data/prefect
EXPOSE 8765 8787
# Liveness of whatever this container runs is checked per service in docker-compose.yml.
CMD ["ats", "--help"]
