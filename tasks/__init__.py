"""Thin Prefect @task wrappers around indexops, one module per stage."""
