"""The message catalogue: every text a person reads in a message or an answer, in English and in Chinese.

One table keyed by message id, each entry a `str.format` template per language (`ATS_LANGUAGE=en|zh`). The
renderers (ats.notify, ats.operator) only choose ids and fill in values; the values themselves (symbols,
prices, PnL) are never translated. A unit test holds that every id has both languages with the same fields.
"""

from __future__ import annotations

from typing import Literal, get_args

Language = Literal["en", "zh"]
LANGUAGES: tuple[Language, ...] = get_args(Language)

MESSAGES: dict[str, dict[Language, str]] = {
    # -------------------------------------------------------------------------------- the bot's answers
    "bot.help": {
        "en": (
            "<b>Commands</b>\n/status: the account now\n/positions: open positions\n/daily: today so far\n"
            "/pools: the trading pools\n/pause: no new entries until /resume\n/resume: lift a pause or a "
            "close-all halt\n/closeall: close every position (asks for a code)"
        ),
        "zh": (
            "<b>命令</b>\n/status：账户状态\n/positions：持仓\n/daily：今日统计\n/pools：交易池\n"
            "/pause：暂停开新仓，直到 /resume\n/resume：解除暂停或全平后的停止开仓\n/closeall：全部平仓（需确认码）"
        ),
    },
    "bot.unknown": {
        "en": "Unknown command {command}. /help lists the commands.",
        "zh": "未知命令 {command}。/help 查看命令列表。",
    },
    "bot.status": {
        "en": (
            "📋 <b>Status</b>\nBalance {wallet} · equity {equity} USDT\nUnrealised {unrealized} · realised today "
            "{realized} USDT\nPositions {positions}/{max_positions}"
        ),
        "zh": (
            "📋 <b>状态</b>\n余额 {wallet} · 权益 {equity} USDT\n未实现 {unrealized} · 今日已实现 {realized} USDT\n"
            "持仓 {positions}/{max_positions}"
        ),
    },
    "bot.pending": {"en": "Entries pending: {symbols}", "zh": "待成交入场：{symbols}"},
    "bot.entries_allowed": {"en": "✅ New entries allowed", "zh": "✅ 允许开新仓"},
    "bot.halted": {"en": "⛔ New entries halted: {reason} (by {by})", "zh": "⛔ 已停止开新仓：{reason}（{by}）"},
    "bot.paused": {
        "en": "⏸ Paused by {by} at {at}: no new entries until /resume",
        "zh": "⏸ {by} 于 {at} 暂停：/resume 之前不开新仓",
    },
    "bot.lifted": {
        "en": "✅ Halt lifted by {by} at {at} ({reason})",
        "zh": "✅ {by} 于 {at} 解除停止开仓（{reason}）",
    },
    "bot.no_positions": {"en": "No open positions", "zh": "无持仓"},
    "bot.positions_head": {"en": "📂 <b>Open positions ({count})</b>", "zh": "📂 <b>持仓（{count}）</b>"},
    "bot.position": {
        "en": "{symbol} {side} {qty} @ {entry} · mark {mark} · PnL {pnl} ({pct}) · stop {stop} · TP1 {tp1}",
        "zh": "{symbol} {side} {qty} @ {entry} · 标记价 {mark} · 盈亏 {pnl}（{pct}）· 止损 {stop} · TP1 {tp1}",
    },
    "bot.not_managed": {"en": "not managed", "zh": "非本系统管理"},
    "bot.pools_head": {"en": "🏊 <b>Pools</b>", "zh": "🏊 <b>交易池</b>"},
    "bot.pool": {
        "en": "<b>{kind}</b> ({count}, built {built}): {symbols}",
        "zh": "<b>{kind}</b>（{count}，构建于 {built}）：{symbols}",
    },
    "bot.pool_fell_back": {"en": "{kind}: kept from before ({reason})", "zh": "{kind}：沿用上一次（{reason}）"},
    "bot.pool_none": {"en": "{kind}: not built yet", "zh": "{kind}：尚未构建"},
    "bot.paused_now": {
        "en": "⏸ Paused: no new entries until /resume (open positions stay protected)",
        "zh": "⏸ 已暂停：/resume 之前不开新仓（已有持仓继续受保护）",
    },
    "bot.already_paused": {"en": "Already paused by {by} at {at}", "zh": "已被 {by} 于 {at} 暂停"},
    "bot.resumed": {
        "en": "▶️ Resumed: new entries allowed again (lifted: {reason})",
        "zh": "▶️ 已恢复开新仓（解除：{reason}）",
    },
    "bot.not_halted": {"en": "Nothing to resume: new entries are allowed", "zh": "无需恢复：当前允许开新仓"},
    "bot.loss_limit_stays": {
        "en": "The daily loss limit halts new entries until 00:00 UTC; it cannot be lifted ({reason})",
        "zh": "已触及每日亏损上限，00:00 UTC 前停止开新仓，不能解除（{reason}）",
    },
    "bot.closeall_confirm": {
        "en": (
            "⚠️ This closes EVERY position at market and halts new entries until 00:00 UTC.\n"
            "To confirm within {seconds} s, send: /closeall {code}"
        ),
        "zh": "⚠️ 这将以市价平掉所有持仓，并在 00:00 UTC 前停止开新仓。\n请在 {seconds} 秒内发送 /closeall {code} 确认",
    },
    "bot.closeall_started": {
        "en": "🚨 Close-all confirmed: closing every position now; the report follows",
        "zh": "🚨 已确认全平：正在平掉所有持仓，稍后发送报告",
    },
    "bot.code_unknown": {
        "en": "No close-all is waiting for confirmation: send /closeall first",
        "zh": "没有待确认的全平：请先发送 /closeall",
    },
    "bot.code_wrong": {
        "en": "Wrong code: nothing was closed. Send /closeall again",
        "zh": "确认码错误，未平仓。请重新发送 /closeall",
    },
    "bot.code_expired": {
        "en": "The code expired ({seconds} s): nothing was closed. Send /closeall again",
        "zh": "确认码已过期（{seconds} 秒），未平仓。请重新发送 /closeall",
    },
    "bot.code_used": {"en": "That code was used already", "zh": "该确认码已使用"},
    "bot.unavailable": {
        "en": "⚠️ {command} failed: {error}. Try again, or use the CLI",
        "zh": "⚠️ {command} 失败：{error}。请重试或使用命令行",
    },
    # -------------------------------------------------------------------------------- notifications (ats.notify)
    "side.LONG": {"en": "🟢 LONG", "zh": "🟢 做多"},
    "side.SHORT": {"en": "🔴 SHORT", "zh": "🔴 做空"},
    "band.none": {"en": "none", "zh": "无"},
    "band.medium": {"en": "medium", "zh": "中等"},
    "band.good": {"en": "good", "zh": "良好"},
    "band.strong": {"en": "strong", "zh": "强"},
    "band.very_strong": {"en": "very strong", "zh": "很强"},
    "signal.head": {
        "en": "📡 <b>Signal {symbol}</b> {side} · {strength}",
        "zh": "📡 <b>信号 {symbol}</b> {side} · {strength}",
    },
    "signal.price": {"en": "Price {price} · bar {bar}", "zh": "价格 {price} · K线 {bar}"},
    "signal.plan": {
        "en": "Plan: stop {stop} ({stop_pct}) · TP1 {tp1} ({tp1_pct}) · TP2 {tp2} ({tp2_pct}) · x{leverage}",
        "zh": "计划：止损 {stop}（{stop_pct}）· TP1 {tp1}（{tp1_pct}）· TP2 {tp2}（{tp2_pct}）· x{leverage}",
    },
    "signal.factors": {"en": "Factors {factors}", "zh": "因子 {factors}"},
    "levels.stop": {"en": "Stop {price} ({pct})", "zh": "止损 {price}（{pct}）"},
    "levels.single": {
        "en": "TP1 {price} ({pct}) · all {qty} (too small to split)",
        "zh": "TP1 {price}（{pct}）· 全部 {qty}（仓位太小，不拆分）",
    },
    "levels.target": {"en": "{name} {price} ({pct}) · {qty}", "zh": "{name} {price}（{pct}）· {qty}"},
    "levels.adjusted": {"en": "<i>Adjusted for {what}</i>", "zh": "<i>已按以下调整：{what}</i>"},
    "entry.head": {
        "en": "{side} <b>{symbol}</b> entered · {strength}",
        "zh": "{side} <b>{symbol}</b> 已开仓 · {strength}",
    },
    "entry.size": {
        "en": "Qty {qty} @ {price} · {notional} USDT · x{leverage}",
        "zh": "数量 {qty} @ {price} · {notional} USDT · x{leverage}",
    },
    "tp1.head": {
        "en": "🎯 <b>TP1 {symbol}</b> {direction} · {qty} @ {price}",
        "zh": "🎯 <b>TP1 {symbol}</b> {direction} · {qty} @ {price}",
    },
    "tp1.pnl": {"en": "PnL {pnl} USDT ({pct})", "zh": "盈亏 {pnl} USDT（{pct}）"},
    "tp1.stop": {
        "en": "Stop moved to {stop} (breakeven) · {left} left",
        "zh": "止损已移至 {stop}（保本）· 剩余 {left}",
    },
    "exit.tp1": {"en": "TP1 hit (single target)", "zh": "触及 TP1（单一目标）"},
    "exit.tp2": {"en": "TP2 hit", "zh": "触及 TP2"},
    "exit.stop": {"en": "stopped out", "zh": "止损出场"},
    "exit.breakeven_stop": {"en": "stopped after TP1", "zh": "TP1 后止损出场"},
    "exit.stop_failed": {"en": "closed: stop could not be placed", "zh": "已平仓：止损单无法挂出"},
    "exit.supervision": {"en": "closed: exchange stop did not fire", "zh": "已平仓：交易所止损未触发"},
    "exit.reversal": {"en": "closed on reversal", "zh": "反向信号平仓"},
    "exit.manual": {"en": "closed on request", "zh": "按请求平仓"},
    "exit.liquidation": {"en": "LIQUIDATED", "zh": "已被强平"},
    "exit.external": {"en": "closed outside the system", "zh": "在系统外平仓"},
    "result.head": {
        "en": "{icon} <b>{symbol} {direction}</b> {exit}",
        "zh": "{icon} <b>{symbol} {direction}</b> {exit}",
    },
    "result.prices": {
        "en": "Entry {entry} → exit {approx}{exit} · qty {qty}",
        "zh": "入场 {entry} → 出场 {approx}{exit} · 数量 {qty}",
    },
    "result.net": {
        "en": "<b>Net {approx}{net} USDT</b> ({pct}{roe})",
        "zh": "<b>净盈亏 {approx}{net} USDT</b>（{pct}{roe}）",
    },
    "result.roe": {"en": ", ROE {roe}", "zh": "，保证金收益率 {roe}"},
    "result.costs": {
        "en": "Gross {gross} · fees {fees} · funding {funding}",
        "zh": "毛利 {gross} · 手续费 {fees} · 资金费 {funding}",
    },
    "result.held": {"en": "Held {duration}", "zh": "持仓 {duration}"},
    "duration.days": {"en": "{days}d {hours}h", "zh": "{days}天{hours}小时"},
    "duration.hours": {"en": "{hours}h {minutes}m", "zh": "{hours}小时{minutes}分"},
    "duration.minutes": {"en": "{minutes}m", "zh": "{minutes}分"},
    "alert.critical": {"en": "🚨 <b>Alert{where}</b>: {title}", "zh": "🚨 <b>警报{where}</b>：{title}"},
    "alert.warning": {"en": "⚠️ <b>Alert{where}</b>: {title}", "zh": "⚠️ <b>警告{where}</b>：{title}"},
    "alert.recovered": {"en": "✅ <b>Recovered{where}</b>: {title}", "zh": "✅ <b>已恢复{where}</b>：{title}"},
    "report.head": {"en": "📊 <b>Daily report {day}</b>", "zh": "📊 <b>日报 {day}</b>"},
    "report.net": {
        "en": "<b>Net {net} USDT</b> · {trades} trades ({wins} won, {losses} lost)",
        "zh": "<b>净盈亏 {net} USDT</b> · {trades} 笔交易（盈 {wins}，亏 {losses}）",
    },
    "report.realised": {
        "en": "Realised {realized} · fees {fees} · funding {funding}",
        "zh": "已实现 {realized} · 手续费 {fees} · 资金费 {funding}",
    },
    "report.balance": {"en": "Balance {balance} · equity {equity} USDT", "zh": "余额 {balance} · 权益 {equity} USDT"},
    "report.halted": {"en": "⛔ New entries halted: {reason}", "zh": "⛔ 停止开新仓：{reason}"},
    "report.lifted": {"en": "✅ Halt lifted by {who}", "zh": "✅ 停止开仓已解除：{who}"},
    "report.open": {"en": "Open ({count}):", "zh": "持仓（{count}）："},
    "report.position": {
        "en": "· {symbol} {direction} {qty} @ {price} · uPnL {pnl}",
        "zh": "· {symbol} {direction} {qty} @ {price} · 未实现 {pnl}",
    },
    "report.no_positions": {"en": "No open positions", "zh": "无持仓"},
}


def say(language: Language, key: str, /, **values: object) -> str:
    """The catalogue's text `key` in `language` with `values` filled in."""
    return MESSAGES[key][language].format(**values)
