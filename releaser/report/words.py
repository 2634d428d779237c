"""The words of a report, in English or Simplified Chinese: labels, values with their units,
and the sentences that say what changed. One language per report, never mixed; Chinese text
uses full-width punctuation and no spaces around Chinese characters. Times are shown in the
report's time zone."""

from __future__ import annotations

from datetime import datetime

from ..terminal import zone_label
from .compute import DAY
from .noise import MIN_CHANGE_PERCENT, MIN_STEPS, SIGNIFICANCE
from .phrasebook import TEXT


class Words:
    """Formats numbers and times and writes sentences in one language."""

    def __init__(self, language: str, timezone: str = "UTC", precise: bool = False):
        from zoneinfo import ZoneInfo

        self.language = language
        self.text = TEXT[language]
        self.zone = ZoneInfo(timezone)
        self.precise = precise  # seconds in times: for windows shorter than an hour

    def __call__(self, key: str, **values) -> str:
        return self.text[key].format(**values)

    # -- values --

    def number(self, value: float) -> str:
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:,.1f}".removesuffix(".0") if value >= 10 else f"{value:.3g}"

    def percent(self, ratio: float) -> str:
        value = ratio * 100
        if value == 0 or value == 100:
            return f"{value:.0f}%"
        if value >= 99:  # availability: the nines matter
            return f"{value:.3f}".rstrip("0").rstrip(".") + "%"
        return f"{value:.2f}%" if value >= 0.01 else f"{value:.2g}%"

    def seconds(self, value: float) -> str:
        """A response time or a duration: 850 ms, 1.2 s, 3 min 5 s, 1 h 10 min, 3 days."""
        if value < 1:
            return self("ms", n=f"{value * 1000:.3g}")
        if value < 60:
            return self("second", n=f"{value:.3g}")
        parts: list[str] = []
        rest = round(value)
        for key, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
            if rest >= size and len(parts) < 2:
                count, rest = divmod(rest, size)
                parts.append(self(key, n=count, s="" if count == 1 else "s"))
            elif parts:
                break
        return self("unit_join").join(parts)

    def value(self, unit: str, value: float | None) -> str:
        if value is None:
            return self("no_data")
        if unit == "seconds":
            return self.seconds(value)
        if unit == "ratio":
            return self.percent(value)
        return self.number(value)

    def volume(self, counted: dict, side: str, uses: bool = False) -> str:
        """What a window counted (a metric's or a feature's `{side}_total`, `_seconds`, `_per_day`):
        a rate a day when the window measured covers a day (compute.per_day), else the count
        itself and how long it was measured ("52 in 7 s")."""
        total, seconds, per_day = (counted[f"{side}_{k}"] for k in ("total", "seconds", "per_day"))
        if total is None or not seconds:
            return self("no_data")
        if per_day is not None:
            return self("times_per_day" if uses else "per_day", value=self.number(per_day))
        return self("times_counted" if uses else "counted", value=self.number(total), seconds=self.seconds(seconds))

    def metric_value(self, item: dict, side: str) -> str:
        if f"{side}_total" in item:
            return self.volume(item, side)
        if item.get(f"{side}_bound"):  # a quantile beyond the histogram's buckets: "under 100 ms"
            return self(item[f"{side}_bound"], value=self.value(item["unit"], item[side]))
        return self.value(item["unit"], item[side])

    def names(self, names: list[str]) -> str:
        """'a', 'a and b', 'a, b and c'."""
        return self("list").join(names[:-1]) + self("and") + names[-1] if len(names) > 1 else names[0]

    @staticmethod
    def why(item: dict) -> str | None:
        """Why the noise test said what it did (noise.Verdict.why; both_under, both_over), if it ran."""
        return (item.get("noise") or {}).get("why")

    def both_bound(self, item: dict) -> str:
        """The bound both sides of a metric lie beyond: the larger one they are both under, or the
        smaller one they are both over."""
        bound = (max if self.why(item) == "both_under" else min)(item["before"], item["after"])
        return self.value(item["unit"], bound)

    def change(self, item: dict) -> str:
        """A metric's change: 'unchanged' within the noise, else relative (-33%) or, for shares,
        percentage points (+0.25 pp); higher or lower when a side is only a bound, and what both
        sides are when the histogram cannot tell them apart ('both under 100 ms')."""
        if item["direction"] == "same":
            return self("unchanged")
        if self.why(item) == "too_few_steps":
            return self("too_few")
        if self.why(item) in ("both_under", "both_over"):
            return self(f"c.{self.why(item)}", value=self.both_bound(item))
        if item["change"] is None:
            return self(f"c.{item['direction']}") if item["direction"] in ("up", "down") else "—"
        if item["unit"] == "ratio":
            points = item["change"] * 100
            return self("points", n=f"{points:+.2f}" if abs(points) < 10 else f"{points:+.1f}")
        percent = item["change_percent"]
        if percent is None:
            return "—"
        return (f"{percent:+.0f}" if abs(percent) >= 10 else f"{percent:+.1f}") + "%"

    def when(self, iso: str | None) -> str:
        if not iso:
            return "—"
        moment = datetime.fromisoformat(iso).astimezone(self.zone)
        return moment.strftime("%Y-%m-%d %H:%M:%S" if self.precise else "%Y-%m-%d %H:%M") + " " + zone_label(moment)

    def metric_name(self, key: str, heading: bool = False) -> str:
        """In a sentence ('p95 response time fell'), or as a heading ('Error rate')."""
        name = self(f"m.{key}")
        return self.capital(name) if heading else name

    @staticmethod
    def capital(text: str) -> str:
        """A sentence's first letter in capitals, unless it starts a name such as p95."""
        return text[:1].upper() + text[1:] if text[1:2].islower() else text

    # -- sentences --

    def delta(self, item: dict) -> str:
        """What one metric did: 'p95 response time fell from 1.2 s to 800 ms (-33%)'."""
        name = self.metric_name(item["key"])
        before, after = self.metric_value(item, "before"), self.metric_value(item, "after")
        if item["before"] is None and item["after"] is None:
            return self("d.none", name=name)
        if item["before"] is None:
            return self("d.new", name=name, after=after)
        if item["after"] is None:
            return self("d.gone", name=name, before=before)
        if item["direction"] == "same":
            return self("d.same", name=name, after=after)
        if item["change"] is None:  # a side is only a bound: no difference to give
            return self(f"d.{item['direction']}_bound", name=name, before=before, after=after)
        counted = "after_total" in item and item["after_per_day"] is None
        key = f"d.volume_{item['direction']}" if counted else f"d.{item['direction']}"
        percent = self.change(item)
        if counted:
            percent = percent.lstrip("+-")
        return self(key, name=name, before=before, after=after, percent=percent)

    def verdict(self, report: dict) -> str:
        """The one line an account manager reads first."""
        incidents, stages = report["incidents"], report["stages"]
        cut = (report["windows"]["after"] or {}).get("cut_short_by") or {}
        cause = ""
        if incidents and incidents[-1]["reason"]:
            cause = self("v.cause", reason=incidents[-1]["reason"])
        if not report["rollout"]["live_at"]:
            last = stages[-1] if stages else {"stage": "—", "status": "registered"}
            if last["status"] == "rolled_back":
                return self("v.rolled_back_early", stage=last["stage"], cause=cause)
            return self("v.not_live", stage=last["stage"], status=self.text.get(f"st.{last['status']}", last["status"]))
        if cut.get("by") == "rollback":
            live = datetime.fromisoformat(report["rollout"]["live_at"])
            duration = max((datetime.fromisoformat(cut["at"]) - live).total_seconds(), 0.0)
            if duration >= 60:  # minutes are precise enough for how long it was live
                duration = round(duration / 60) * 60
            return self("v.rolled_back", duration=self.seconds(duration), cause=cause)
        metrics = {m["key"]: m for m in report["metrics"]}
        parts: list[str] = []
        worse = False
        speed = next((metrics[k] for k in ("p95", "p50") if metrics[k]["direction"] is not None), None)
        for item, words in (
            (speed, ("p.faster", "p.slower", "p.as_fast")),
            (metrics["error_rate"], ("p.fewer_errors", "p.more_errors", "p.same_errors")),
            (metrics["availability"], ("p.more_available", "p.less_available", None)),
        ):
            if item is None or item["direction"] is None:
                continue
            chosen = {"better": words[0], "worse": words[1]}.get(item["assessment"], words[2])
            worse = worse or item["assessment"] == "worse"
            if chosen:
                parts.append(self(chosen))
        late = [i for i in incidents if not i["within_sla"]]
        plural = {"count": len(incidents), "s": "" if len(incidents) == 1 else "s", "late": len(late)}
        parts.append(
            self("p.no_incidents")
            if not incidents
            else self("p.incidents_late" if late else "p.incidents_ok", **plural)
        )
        untold = any(self.why(metrics[k]) == "too_few_steps" for k in ("p95", "p50", "error_rate", "availability"))
        untold = untold or not all(self.observed(report, side) for side in ("before", "after"))
        key = "v.attention" if worse or late else "v.too_few" if untold else "v.healthy"
        return self(key, parts=self("p.join").join(parts))

    def story(self, report: dict) -> str | None:
        """What became of the release, in the tense that matches it."""
        release, rollout = report["release"], report["rollout"]
        if not rollout["live_at"]:
            return None
        names = {
            "version": release["version"],
            "project": report["project"],
            "environment": report["environment"]["name"],
            "live": self.when(rollout["live_at"]),
        }
        cut = (report["windows"]["after"] or {}).get("cut_short_by") or {}
        if cut.get("by") == "rollback":
            return self("s.rolled_back", at=self.when(cut["at"]), **names)
        if cut.get("by") == "release":
            return self("s.superseded", until=self.when(cut.get("at")), next=cut["release"], **names)
        if release["status"] in ("rolled_back", "failed"):
            return self("s.rolled_back_later", **names)
        return self("s.live", **names)

    def summary(self, report: dict) -> list[str]:
        """The plain-words paragraph at the top: the verdict, then one sentence per item."""
        lines = [self.verdict(report)]
        story = self.story(report)
        if story:
            lines.append(story)
        lines += self.comparison(report)
        for feature in report["features"]:
            if feature.get("after_total") is None:
                continue
            short = feature["after_per_day"] is None
            count = self.volume(feature, "after", uses=True)
            if feature.get("before_total") is None:
                lines.append(
                    self("s.feature_new_short" if short else "s.feature_new", name=feature["name"], count=count)
                )
            else:
                before = self.volume(feature, "before", uses=True)
                lines.append(
                    self("s.feature_short" if short else "s.feature", name=feature["name"], count=count, before=before)
                )
        incidents = report["incidents"]
        sla = self.seconds(report["sla"]["rollback_seconds"])
        if not incidents:
            lines.append(self("no_incidents"))
        else:
            late = [i for i in incidents if not i["within_sla"]]
            plural = {
                "count": len(incidents),
                "s": "" if len(incidents) == 1 else "s",
                "were": "was" if len(incidents) == 1 else "were",
                "sla": sla,
            }
            if late:
                lines.append(self("s.incidents_bad", late=len(late), **plural))
            else:
                slowest = max(i["time_to_rollback"] for i in incidents)
                asked = sum(1 for i in incidents if i.get("asked"))
                key = "s.incidents_ok_asked" if asked else "s.incidents_ok"
                lines.append(self(key, slowest=self.seconds(slowest), asked=asked, **plural))
        drill = self.drill(report)
        if drill:
            lines.append(drill)
        compared = [m for m in report["metrics"] if m["before"] is not None and m["after"] is not None]
        missing = [self.metric_name(m["key"]) for m in report["metrics"] if m["before"] is None and m["after"] is None]
        if missing and compared:
            lines.append(self("s.missing", names=self("list").join(missing)))
        return lines

    def drill(self, report: dict) -> str | None:
        """The environment's last rollback drill, against the rollback SLA (reports of before
        drills have none)."""
        drill = report.get("drill")
        if not drill:
            return None
        where = {"environment": drill["environment"], "at": self.when(drill["at"])}
        if drill["status"] != "passed" or drill["rollback_seconds"] is None:
            return self("s.drill_failed", why=drill["detail"] or "—", **where)
        sla = self.seconds(drill["sla_seconds"])
        restore = drill["restore_seconds"]
        return self(
            "s.drill_passed",
            release=drill["release"],
            previous=drill["previous"],
            rollback=self.seconds(drill["rollback_seconds"]),
            restore="" if restore is None else self("s.drill_restore", seconds=self.seconds(restore)),
            verdict=self("s.drill_within" if drill["within_sla"] else "s.drill_over", sla=sla),
            **where,
        )

    def comparison(self, report: dict) -> list[str]:
        """What the metrics did, in as many sentences as it takes; every one of them agrees with the
        table: a window without data is said to be so, and the period compared with is the one
        measured when that is shorter than the configured window (by more than a step)."""
        release, metrics = report["release"], report["metrics"]
        if not report["rollout"]["live_at"]:
            last = report["stages"][-1] if report["stages"] else {"stage": "—", "status": "registered"}
            status = self.text.get(f"st.{last['status']}", last["status"])
            return [self("s.not_live", version=release["version"], stage=last["stage"], status=status)]
        observed = {name: self.seconds(self.observed(report, name)) for name in ("before", "after")}
        compared = [m for m in metrics if m["before"] is not None and m["after"] is not None]
        if not compared:
            measured = (self.measured(report, "before"), self.measured(report, "after"))
            key = {
                (False, False): "s.no_metrics",
                (True, False): "s.nothing_after",
                (False, True): "s.nothing_before",
                (True, True): "s.nothing_in_common",
            }[measured]
            lines = [self(key, **observed)]
            if report["environment"]["source"] == "scrape" and not all(measured):
                lines.append(self("s.scrape_hint"))
            return lines
        lines = []
        if 0 < min(self.observed(report, side) for side in ("before", "after")) < DAY:
            lines.append(self("s.short", **observed))
        window = self.seconds(report["window_seconds"])
        if self.observed(report, "before") < report["window_seconds"] - report["step_seconds"]:
            window = self("s.measured_span", span=observed["before"])
        first = ("error_rate", "availability")  # what users suffer leads whenever it moved
        moved = sorted(
            (m for m in compared if m["direction"] in ("up", "down")),
            key=lambda m: (
                m["key"] not in first,
                first.index(m["key"]) if m["key"] in first else 0,
                -abs(m["change_percent"]) if m["change_percent"] is not None else -1e9,
            ),
        )
        untold = [m for m in compared if self.why(m) == "too_few_steps"]
        one_sided = [m for m in metrics if (m["before"] is None) != (m["after"] is None)]
        if moved:
            lines.append(
                self("s.compared", window=window)
                + ("" if self.language == "zh-CN" else " ")
                + self("join").join(self.delta(m) for m in moved[:5])
                + self("end")
            )
        elif not untold and one_sided:
            lines.append(
                self(
                    "s.nothing_changed_in",
                    window=window,
                    names=self("list").join(self.metric_name(m["key"]) for m in compared),
                )
            )
        elif not untold:
            lines.append(self("s.nothing_changed", window=window))
        if untold:
            lines.append(
                self(
                    "s.too_few",
                    items=self("join").join(
                        self(
                            "s.too_few_item",
                            name=self.metric_name(m["key"]),
                            before=self.metric_value(m, "before"),
                            after=self.metric_value(m, "after"),
                        )
                        for m in untold
                    ),
                )
            )
        bounded: dict[tuple[str, str], list[str]] = {}  # quantiles the histogram cannot tell apart
        for item in compared:
            why = self.why(item)
            if why in ("both_under", "both_over"):
                bounded.setdefault((str(why), self.both_bound(item)), []).append(self.metric_name(item["key"]))
        for (why, bound), names in bounded.items():
            lines.append(self.capital(self(f"s.{why}", names=self.names(names), value=bound)))
        for side in ("before", "after"):
            alone = [self.metric_name(m["key"]) for m in one_sided if m[side] is not None]
            if alone:
                lines.append(self(f"s.only_{side}", names=self("list").join(alone)))
        return lines

    @staticmethod
    def observed(report: dict, side: str) -> float:
        """How long a window was measured (seconds; 0 without a window)."""
        return (report["windows"][side] or {}).get("observed_seconds") or 0.0

    @staticmethod
    def measured(report: dict, side: str) -> bool:
        """Whether anything at all was measured in a window: a metric or a feature's usage."""
        return any(m[side] is not None for m in report["metrics"]) or any(
            f.get(f"{side}_total") is not None for f in report["features"]
        )

    def chart_note(self, report: dict, zone: str) -> str:
        """What the charts span: the time measured of each window, as the table's headings say."""
        spans = {
            side: self.seconds(self.observed(report, side))
            if self.measured(report, side) and self.observed(report, side)
            else self("nothing")
            for side in ("before", "after")
        }
        return self("chart_note", zone=zone, **spans)

    def heading(self, report: dict, side: str) -> str:
        """A window's column heading: how long it was measured, that nothing was, or that there is
        no window after (the release is not live)."""
        if report["windows"][side] is None and side == "after":
            return self("after_no_window")
        if not self.measured(report, side):
            return self(f"{side}_unmeasured")
        seconds = self.observed(report, side)
        return self(f"{side}_measured", seconds=self.seconds(seconds)) if seconds else self(f"{side}_plain")

    def glossary(self, report: dict) -> list[str]:
        """The words the report uses that need explaining: "under" and "over" only where it uses them."""
        entries = [
            self("g.p50"),
            self("g.p95"),
            self("g.pp"),
            self(
                "g.noise",
                percent=f"{MIN_CHANGE_PERCENT:g}",
                step=self.seconds(report["step_seconds"]),
                alpha=f"{SIGNIFICANCE:g}",
                steps=MIN_STEPS,
            ),
        ]
        if any(m.get("before_bound") or m.get("after_bound") for m in report["metrics"]):
            entries.append(self("g.bound"))
        return entries
