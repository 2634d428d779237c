"""The dashboard's words in English and Chinese (zh-CN): one key, two phrasings. A missing key
fails the tests (tests/test_web.py), never the page."""

from __future__ import annotations

import re

LANGUAGES = ("en", "zh-CN")

WORDS: dict[str, dict[str, str]] = {
    "overview": {"en": "Overview", "zh-CN": "总览"},
    "releases": {"en": "Releases", "zh-CN": "版本"},
    "journal": {"en": "Journal", "zh-CN": "日志"},
    "reports": {"en": "Effect reports", "zh-CN": "效果报告"},
    "environments": {"en": "Environments", "zh-CN": "环境"},
    "environment": {"en": "Environment", "zh-CN": "环境"},
    "sign_in": {"en": "Sign in", "zh-CN": "登录"},
    "sign_out": {"en": "Sign out", "zh-CN": "退出"},
    "user": {"en": "User", "zh-CN": "用户名"},
    "password": {"en": "Password", "zh-CN": "密码"},
    "signed_in_as": {"en": "Signed in as", "zh-CN": "当前用户"},
    "host": {"en": "Host", "zh-CN": "主机"},
    "runs": {"en": "Runs", "zh-CN": "运行版本"},
    "previous": {"en": "Before", "zh-CN": "上一版本"},
    "in_doubt": {"en": "In doubt", "zh-CN": "状态存疑"},
    "last_action": {"en": "Last action", "zh-CN": "最近操作"},
    "current": {"en": "Current", "zh-CN": "当前版本"},
    "consistent": {"en": "consistent", "zh-CN": "一致"},
    "mixed": {"en": "mixed versions", "zh-CN": "版本不一致"},
    "locked_by": {"en": "Held by", "zh-CN": "占用者"},
    "running": {"en": "Running now", "zh-CN": "正在进行"},
    "interrupted": {"en": "Interrupted (releaser resume)", "zh-CN": "已中断（releaser resume）"},
    "route": {"en": "Route", "zh-CN": "路由"},
    "database": {"en": "Database", "zh-CN": "数据库"},
    "drills": {"en": "Drills", "zh-CN": "演练"},
    "awaiting": {"en": "Awaiting approval", "zh-CN": "待审批"},
    "approvals": {"en": "Approvals", "zh-CN": "审批"},
    "windows": {"en": "Rollback windows", "zh-CN": "回滚窗口"},
    "watchers": {"en": "Watchers", "zh-CN": "值守进程"},
    "freezes": {"en": "Freezes", "zh-CN": "封版"},
    "none": {"en": "none", "zh-CN": "无"},
    "restore": {"en": "Restore", "zh-CN": "恢复"},
    "hosts_word": {"en": "hosts", "zh-CN": "台主机"},
    "not_found": {"en": "Not found", "zh-CN": "未找到"},
    "version": {"en": "Version", "zh-CN": "版本号"},
    "status": {"en": "Status", "zh-CN": "状态"},
    "stage": {"en": "Stage", "zh-CN": "阶段"},
    "stages": {"en": "Stages", "zh-CN": "阶段"},
    "started": {"en": "Started", "zh-CN": "开始"},
    "finished": {"en": "Finished", "zh-CN": "结束"},
    "reason": {"en": "Reason", "zh-CN": "原因"},
    "runs_on": {"en": "Runs on", "zh-CN": "运行于"},
    "created": {"en": "Registered", "zh-CN": "登记于"},
    "by": {"en": "by", "zh-CN": "操作人"},
    "requested_by": {"en": "Asked by", "zh-CN": "申请人"},
    "approvers": {"en": "Approvers", "zh-CN": "审批人"},
    "anyone": {"en": "anyone", "zh-CN": "任何人"},
    "not_by_promoter": {"en": "not the promoter", "zh-CN": "不能是发起人"},
    "approve": {"en": "Approve", "zh-CN": "批准"},
    "reject": {"en": "Reject", "zh-CN": "驳回"},
    "abort": {"en": "Abort", "zh-CN": "中止"},
    "rollback": {"en": "Roll back", "zh-CN": "回滚"},
    "unlock": {"en": "Unlock", "zh-CN": "解锁"},
    "confirm": {"en": "Confirm", "zh-CN": "确认"},
    "cancel": {"en": "Cancel", "zh-CN": "取消"},
    "checks": {"en": "Checks", "zh-CN": "健康检查"},
    "evidence": {"en": "Evidence", "zh-CN": "证据"},
    "cohort": {"en": "cohort", "zh-CN": "灰度组"},
    "baseline": {"en": "baseline", "zh-CN": "基线"},
    "bound": {"en": "bound", "zh-CN": "上限"},
    "more_requests": {"en": "about {n} more requests to decide", "zh-CN": "约还需 {n} 个请求才能判定"},
    "requests": {"en": "requests", "zh-CN": "请求"},
    "events_word": {"en": "events", "zh-CN": "事件"},
    "time": {"en": "Time", "zh-CN": "时间"},
    "kind": {"en": "Kind", "zh-CN": "类型"},
    "message": {"en": "Message", "zh-CN": "内容"},
    "filter": {"en": "Filter", "zh-CN": "筛选"},
    "search": {"en": "Search", "zh-CN": "搜索"},
    "older": {"en": "Older", "zh-CN": "更早"},
    "live": {"en": "live", "zh-CN": "实时"},
    "due": {"en": "Due", "zh-CN": "应发送"},
    "sent": {"en": "Sent", "zh-CN": "已发送"},
    "open_report": {"en": "Open the report", "zh-CN": "查看报告"},
    "no_report": {"en": "not written yet", "zh-CN": "尚未生成"},
    "closes": {"en": "closes", "zh-CN": "关闭于"},
    "language": {"en": "中文", "zh-CN": "English"},
    "recent": {"en": "Recent events", "zh-CN": "最近事件"},
    "nothing": {"en": "Nothing yet.", "zh-CN": "暂无。"},
    "refused": {"en": "Refused", "zh-CN": "已拒绝"},
    "done": {"en": "Done", "zh-CN": "已完成"},
    "confirm_approve": {
        "en": "Approve {stage} of {release} on {environment}?",
        "zh-CN": "批准 {release} 在 {environment} 的 {stage} 阶段？",
    },
    "confirm_reject": {
        "en": "Reject {stage} of {release} on {environment}?",
        "zh-CN": "驳回 {release} 在 {environment} 的 {stage} 阶段？",
    },
    "confirm_abort": {
        "en": "Abort the promotion of {release} on {environment} and roll its stage back?",
        "zh-CN": "中止 {release} 在 {environment} 的发布并回滚该阶段？",
    },
    "confirm_rollback": {
        "en": "Roll every host of {environment} back to the release it ran before?",
        "zh-CN": "将 {environment} 的所有主机回滚到上一个版本？",
    },
    "confirm_unlock": {
        "en": "Clear the lock on {environment}? Only when its holder is gone.",
        "zh-CN": "清除 {environment} 的锁？仅在占用进程已不存在时使用。",
    },
    "reason_needed": {"en": "Why (journaled with your name)", "zh-CN": "原因（将连同你的用户名记入日志）"},
    "window_until": {"en": "until", "zh-CN": "截止"},
    "sla": {"en": "SLA", "zh-CN": "SLA"},
    "all_reports": {"en": "Reports", "zh-CN": "报告"},
    "frozen_now": {"en": "frozen: approve after the freeze", "zh-CN": "封版中：封版结束后再批准"},
    "then_promote": {
        "en": "The stage starts when its promotion runs again (`releaser promote`), or at once for one waiting "
        "(`promote --wait`).",
        "zh-CN": "该阶段将在再次执行发布（`releaser promote`）时开始；"
        "若有发布正在等待（`promote --wait`），则立即开始。",
    },
    "nothing_deployed": {"en": "nothing deployed", "zh-CN": "尚未部署"},
    "full_stop": {"en": ". ", "zh-CN": "。"},
    "colon": {"en": ": ", "zh-CN": "："},
    "holder_gone": {"en": "its holder is gone", "zh-CN": "持有者已不存在"},
    "holder_alive": {"en": "its holder is alive: unlocking will be refused", "zh-CN": "持有者仍在运行：解锁将被拒绝"},
    "not_locked": {"en": "not locked", "zh-CN": "未锁定"},
    "unwatched": {
        "en": "No watch is running: nothing rolls these windows back. Start `releaser watch`, or run "
        "`releaser watch --once` every minute from cron.",
        "zh-CN": "没有值守进程在运行：这些回滚窗口内出现问题时不会自动回滚。请启动`releaser watch`，"
        "或用cron每分钟执行`releaser watch --once`。",
    },
    "back_to": {"en": "Goes back to", "zh-CN": "回滚到"},
    "stays": {"en": "stays as it is", "zh-CN": "保持不变"},
    "passed_over": {"en": "Passed over (rolled back or failed)", "zh-CN": "跳过（已回滚或失败）"},
    "plan_note": {
        "en": "The plan of `releaser rollback --dry-run`, from asking every host now; the rollback asks them again.",
        "zh-CN": "此计划与`releaser rollback --dry-run`相同，来自刚才对每台主机的询问；回滚时会再次询问。",
    },
    "service_reports": {"en": "Monthly service reports", "zh-CN": "月度服务报告"},
    "month": {"en": "Month", "zh-CN": "月份"},
    "copy": {"en": "Written here", "zh-CN": "本机副本"},
    "not_scheduled": {"en": "not scheduled", "zh-CN": "未排期"},
    "no_copy_here": {
        "en": "no copy on this machine (written where it was sent)",
        "zh-CN": "本机无副本（在发送它的机器上生成）",
    },
    "service_hint": {
        "en": "`releaser report service --month YYYY-MM --env ENV` writes a month's report (a preview while the "
        "month runs); with report.service.send, `releaser watch` mails each month's once it is due.",
        "zh-CN": "执行 `releaser report service --month YYYY-MM --env 环境` 生成某月的报告（当月未结束时为预览）；"
        "配置 report.service.send 后，`releaser watch` 会在到期时发送每月报告。",
    },
}


STATES: dict[str, str] = {  # the stored states and verdicts, as the Chinese pages say them
    "registered": "已登记",
    "promoting": "发布中",
    "live": "线上",
    "superseded": "已被取代",
    "abandoned": "已放弃",
    "awaiting_approval": "待审批",
    "running": "进行中",
    "rolling_back": "回滚中",
    "passed": "已通过",
    "rolled_back": "已回滚",
    "rollback_failed": "回滚未完成",
    "failed": "失败",
    "skipped": "已跳过",
    "held": "已暂停",
    "awaiting": "待审批",
    "approved": "已批准",
    "rejected": "已驳回",
    "used": "已使用",
    "cancelled": "已取消",
    "pass": "通过",
    "fail": "不通过",
    "inconclusive": "证据不足",
    "not_applicable": "不适用",
    "scheduled": "待发送",
    "sending": "发送中",
    "committing": "发送中",
    "sent": "已发送",
    "unconfirmed": "未确认",
}


# What the dashboard says when it refuses or has done something, as the Chinese pages say it: the
# dashboard's own messages and the CLI's refusals a page meets most. Any other message stays as
# releaser wrote it (English); the groups keep releases, names and configuration keys as they are
# (a group named `state` is a stored state, and is translated).
MESSAGES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), zh)
    for p, zh in (
        (r"wrong user name or password", "用户名或密码错误"),
        (
            r"too many failed sign-ins from this address: try again in (\d+) minutes",
            "此地址登录失败次数过多：请{0}分钟后再试",
        ),
        (
            r"too many failed sign-ins as (\S+) from this address: try again in (\d+) minutes",
            "从此地址以{0}登录失败次数过多：请{1}分钟后再试",
        ),
        (
            r"the sign-in header (\S+) came from (\S+), which is not the proxy \(dashboard\.proxy\.from\): refused",
            "登录头{0}来自{1}，该地址不是配置的代理（dashboard.proxy.from）：已拒绝",
        ),
        (
            r"the sign-in header (\S+) came without the proxy's secret .*",
            "登录头{0}未携带代理的密钥（X-Releaser-Proxy，dashboard.proxy.secret_env）：已拒绝；请通过代理登录",
        ),
        (
            r"(.+) is not a dashboard user: ask to be added under dashboard\.users",
            "{0}不是仪表盘用户：请管理员在dashboard.users中添加",
        ),
        (
            r"this sign-in form is not one this page gave \(or cookies are off\): reload the sign-in page",
            "此登录表单不是本页面给出的（或浏览器禁用了Cookie）：请刷新登录页",
        ),
        (r"the form's token is missing: reload the page and confirm again", "表单缺少令牌：请刷新页面后重新确认"),
        (
            r"the form's token is not this session's: reload the page and confirm again",
            "表单令牌不属于当前会话：请刷新页面后重新确认",
        ),
        (r"the form is too old: reload the page and confirm again", "表单已过期：请刷新页面后重新确认"),
        (
            r"this form was sent already \(a repeated request\): reload the page to act again",
            "此表单已提交过（重复请求）：如需再次操作，请刷新页面",
        ),
        (r"the form is too large or not a form", "表单过大或格式不对"),
        (r"give a reason: it is journaled with your name", "请填写原因：它将连同你的用户名记入日志"),
        (r"confirm first", "请先勾选确认"),
        (
            r"nothing of (\S+) awaits approval( for (\S+))?: a stage asks for one when `releaser promote` reaches it",
            "{0}没有待审批的阶段：发布推进到需要审批的阶段时才会发起审批",
        ),
        (
            r"this approval link was altered, or signed with another secret than this server's .*: open (\S+) from "
            r"the dashboard",
            "此审批链接已被改动，或由与本服务器不同的密钥签名（推进发布的机器须与仪表盘使用相同的secret_env）：请从仪表盘打开{0}",
        ),
        (r"this approval link has expired: open (\S+) from the dashboard", "此审批链接已过期：请从仪表盘打开{0}"),
        (
            r"(\S+) is not an approver of (\S+): ask for `(.+)` under dashboard\.users\.(\S+)",
            "{0}不是{1}的审批人：请管理员在dashboard.users.{3}中加入`{2}`",
        ),
        (
            r"(\S+) is not an operator of (\S+): ask for `(.+)` under dashboard\.users\.(\S+)",
            "{0}不是{1}的运维操作人：请管理员在dashboard.users.{3}中加入`{2}`",
        ),
        (
            r"(\S+) asked for (\S+) of (\S+) and may not approve it too \(not_by_promoter\): another approver must",
            "{0}发起了{2}的{1}阶段，不能同时批准（not_by_promoter）：须由另一位审批人批准",
        ),
        (r"(\S+) may not decide on (\S+) of (\S+): its approvers are (.+)", "{0}不能审批{2}的{1}阶段：审批人为{3}"),
        (
            r"(\S+) is frozen: (.+) \((.+)\); approve (\S+) of (\S+) after it, or through it: .*",
            "{0}处于封版期：{1}（{2}）；请在封版结束后再批准{4}的{3}阶段，或在终端执行"
            "`releaser approve {4} --stage {3} --force --reason 理由`强行批准（记入日志；其发布也须加--force）",
        ),
        (r"(\S+) of (\S+): approved by (\S+)", "{1}的{0}阶段：已由{2}批准"),
        (r"(\S+) of (\S+): rejected by (\S+)", "{1}的{0}阶段：已由{2}驳回"),
        (r"(\S+): (\d+) host\(s\) rolled back", "{0}：已回滚{1}台主机"),
        (r"(\S+): nothing to roll back", "{0}：没有需要回滚的主机"),
        (r"(\S+): lock of (\S+) cleared", "{0}：已清除{1}持有的锁"),
        (r"(\S+) was not locked", "{0}没有被锁定"),
        (
            r"the lock on (\S+) is held by (\S+)'s pid (\d+) on (\S+), which is alive and renews its lease \((.+)\): "
            r"wait for it, or abort its promotion; only a holder that is gone may be unlocked from the dashboard",
            "{0}的锁由{1}在{3}上的进程{2}持有，该进程仍在运行并续租（{4}）：请等待它结束，或中止其发布；仪表盘只能解除持有者已不存在的锁",
        ),
        (r"(\S+): approval requests cancelled; nothing had started", "{0}：审批请求已取消；尚未开始任何阶段"),
        (
            r"(\S+) of (\S+) on (\S+): abort asked; it is (?P<state>\S+) \(the journal follows\)",
            "{2}上{1}的{0}阶段：已请求中止，当前状态为{3}（详见日志）",
        ),
    )
]


def message(language: str, text: str) -> str:
    """A refusal or a done action's words in the page's language (as written when no rule knows it)."""
    if language != "zh-CN":
        return text
    for pattern, zh in MESSAGES:
        found = pattern.fullmatch(text)
        if found:
            values = list(found.groups())
            if "state" in pattern.groupindex:  # a stored state, said in the language too
                values[pattern.groupindex["state"] - 1] = state(language, found["state"])
            return zh.format(*values)
    return text


def state(language: str, value: object) -> str:
    """A stored state in the page's language (as stored in English)."""
    text = str(value)
    return STATES.get(text, text) if language == "zh-CN" else text.replace("_", " ")


def phrase(language: str, key: str, **values: object) -> str:
    entry = WORDS[key]
    text = entry.get(language) or entry["en"]
    return text.format(**values) if values else text
