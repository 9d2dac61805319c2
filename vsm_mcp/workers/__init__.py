"""VSM System 3 workers on the durable spine (docs/ARCHITECTURE.md, "Workers"):

* the episode analyzer — ``rollup`` (arithmetic), ``alerts`` (thresholds), ``analyzer`` (database
  and bus), scheduled by ``jobs.analyze_window``;
* the policy evaluator — ``policy_audit``, a bus consumer emitting ``policy.violation``;
* the notifier — ``notify/`` (channels, ledger, senders for Telegram, signed webhooks, SMTP),
  one durable ``jobs.deliver`` workflow per (channel, event).

``runtime.Workers`` starts them in a process whose spine is launched (``vsm-mcp serve`` or
``vsm-mcp worker``). Importing the package registers the jobs' workflows and queues with the
spine (vsm_mcp/durable imports it before every launch, so a recovered workflow is known).
"""

from vsm_mcp.workers import jobs as jobs  # noqa: F401  (workflows and queues, at import)
