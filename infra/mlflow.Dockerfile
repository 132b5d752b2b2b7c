# MLflow tracking + registry server for infra/compose.yaml (built with the repo root as context).
FROM python:3.11-slim

# psycopg2-binary: PostgreSQL backend and auth stores; boto3: s3:// artifacts (MinIO);
# Flask-WTF: CSRF protection the basic-auth app needs.
RUN pip install --no-cache-dir mlflow==3.17.2 psycopg2-binary boto3 Flask-WTF

RUN useradd --create-home --uid 1000 mlflow
COPY --chmod=0755 infra/mlflow/start-server.sh /usr/local/bin/start-server.sh
USER mlflow
WORKDIR /home/mlflow
EXPOSE 5000
ENTRYPOINT ["/usr/local/bin/start-server.sh"]
CMD ["--host=0.0.0.0", "--port=5000"]
