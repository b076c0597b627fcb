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
}


def say(language: Language, key: str, /, **values: object) -> str:
    """The catalogue's text `key` in `language` with `values` filled in."""
    return MESSAGES[key][language].format(**values)
