"""The control plane: where users submit tasks, sites lease work, and every attempt is billed.

A thin driver around the core: tasks and sites live in a database; a scheduling loop turns them
into the same `Network` and `Workload` the simulator uses and lets the same placement code decide.
`create_app` builds the FastAPI application; `computility up` serves it with uvicorn.
"""
