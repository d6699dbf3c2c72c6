"""Orchestration of the Kappa "batch": the six-hourly replay DAG and its thin callables.

``dags/kappa_replay.py`` is the Airflow DAG (its folder is Airflow's DAGs folder);
``callables.py`` is what its tasks call, plain functions into ``replay.api``;
``runmetrics.py`` writes each run's figures as a Prometheus text file that
``kappa airflow metrics-exporter`` serves.
"""
