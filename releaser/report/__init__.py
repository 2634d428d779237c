"""The effect report: written `report.delay` after a release's last stage passes, comparing
the window before its rollout with the window after, and delivered exactly once.

    timeline  per-step metric increases, from Prometheus or from samples releaser recorded
    compute   the numbers (language-free)
    words     English and Simplified Chinese
    charts    one PNG per metric
    render    HTML, Markdown, JSON
    mail      SMTP with an explicit commit point
    outbox    scheduling, due reports, delivery exactly once
"""
