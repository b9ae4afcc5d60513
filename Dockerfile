# The allocflow image: the `allocflow` command and everything it needs, for the
# pipeline, the lander and the dashboard of docker-compose.yml (docs/deployment.md).
# Bytewax 0.21.1 ships wheels up to Python 3.12.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY models models
COPY connectors connectors
COPY flows flows
COPY dashboards dashboards
COPY quality quality
# The tested versions of requirements.lock constrain the install (build tools too).
# The data directories belong to the allocflow user; a named volume mounted on one
# starts with that ownership.
RUN PIP_CONSTRAINT=/src/requirements.lock pip install . \
    && useradd --create-home --uid 10001 allocflow \
    && mkdir -p /var/lib/allocflow/db /var/lib/allocflow/recovery \
    && chown -R allocflow:allocflow /var/lib/allocflow

USER allocflow
WORKDIR /home/allocflow
EXPOSE 8501
CMD ["allocflow", "--help"]
