"""The REST API under ``/api/v1``, one router per audience: tasks (users), sites and earnings
(providers), the agent protocol (sites' agents), tenants and keys (operators)."""
