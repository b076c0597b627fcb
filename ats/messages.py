"""The message catalogue: every text a person reads in a message or an answer, in English and in Chinese.

One table keyed by message id, each entry a `str.format` template per language (`ATS_LANGUAGE=en|zh`). The
renderers (ats.notify, ats.operator) only choose ids and fill in values; the values themselves (symbols,
prices, PnL) are never translated. A unit test holds that every id has both languages with the same fields.

The pure code says what to tell as a `Text` (an id and its values, a value possibly a `Text` itself) and never
chooses a language: the text is rendered once, where it is queued or sent and the setting is known. A free-form
value (an exchange's error message) travels as data inside the translated frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
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
    "alert.notice": {"en": "ℹ️ <b>Notice{where}</b>: {title}", "zh": "ℹ️ <b>提示{where}</b>：{title}"},
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
    "report.halted_by": {"en": "{reason} (by {by})", "zh": "{reason}（{by}）"},
    "report.no_reason": {"en": "reason not recorded", "zh": "未记录原因"},
    "report.lifted_at": {"en": "{who} at {at}", "zh": "{who}，{at}"},
    "report.win_rate": {
        "en": "win rate {rate} % · TP1 reached in {tp1} of {trades}",
        "zh": "胜率 {rate} % · {trades} 笔中 {tp1} 笔达到 TP1",
    },
    "report.exits": {"en": "exits: {exits}", "zh": "出场：{exits}"},
    # -------------------------------------------------------------------------------- alerts (titles, details)
    # Alert texts hold no HTML: the alert frame escapes them whole.
    "text.data": {"en": "{text}", "zh": "{text}"},  # a free-form value (an exchange's message) as it came
    "lifecycle.late_entry": {
        "en": "Entry filled after it was reported failed: protecting it",
        "zh": "入场单在报告失败后成交：正在为其设置保护",
    },
    "lifecycle.partly_liquidated": {"en": "Position partly liquidated", "zh": "仓位被部分强平"},
    "lifecycle.reduced_outside": {"en": "Position reduced outside the system", "zh": "仓位在系统外被减少"},
    "lifecycle.fill": {"en": "{qty} at {price}", "zh": "{qty} @ {price}"},
    "lifecycle.fill_by": {"en": "{qty} at {price} ({client_id})", "zh": "{qty} @ {price}（{client_id}）"},
    "lifecycle.stop_rejected": {"en": "Stop rejected: closing at market", "zh": "止损单被拒绝：正在市价平仓"},
    "lifecycle.tp_rejected": {
        "en": "Take-profit {leg} rejected; the stop still protects",
        "zh": "止盈单 {leg} 被拒绝；止损仍在保护",
    },
    "lifecycle.stop_canceled": {
        "en": "Stop {leg} was canceled on the exchange: replacing it",
        "zh": "止损单 {leg} 在交易所被撤销：正在重新挂出",
    },
    "lifecycle.stop_expired": {
        "en": "Stop {leg} expired on the exchange: replacing it",
        "zh": "止损单 {leg} 在交易所过期：正在重新挂出",
    },
    "lifecycle.tp_canceled": {
        "en": "Take-profit {leg} was canceled on the exchange",
        "zh": "止盈单 {leg} 在交易所被撤销",
    },
    "lifecycle.supervision": {
        "en": "Exchange stop did not fire: closing at market",
        "zh": "交易所止损未触发：正在市价平仓",
    },
    "lifecycle.vanished": {
        "en": "Position vanished from the exchange: check the account",
        "zh": "仓位在交易所消失：请检查账户",
    },
    "lifecycle.vanished_detail": {
        "en": "vanished on the exchange with {qty} open (liquidation, ADL or a manual close); exit estimated",
        "zh": "在交易所消失时仍有 {qty} 未平（强平、自动减仓或手动平仓）；出场价为估算",
    },
    "lifecycle.entry_failed": {"en": "Entry failed", "zh": "入场失败"},
    "lifecycle.entry_rejected": {"en": "entry rejected: {reason}", "zh": "入场单被拒绝：{reason}"},
    "lifecycle.entry_expired": {"en": "entry expired without a fill", "zh": "入场单过期，未成交"},
    "lifecycle.entry_canceled_unfilled": {"en": "entry was canceled without a fill", "zh": "入场单被撤销，未成交"},
    "lifecycle.stop_failed": {"en": "stop {leg} rejected: {reason}", "zh": "止损单 {leg} 被拒绝：{reason}"},
    "lifecycle.stop_missed": {
        "en": "mark {price} beyond the stop {stop} for {seconds} s without a stop fill",
        "zh": "标记价 {price} 越过止损 {stop} 已 {seconds} 秒，止损仍未成交",
    },
    "lifecycle.reversal": {
        "en": "{direction} signal of strength {strength}",
        "zh": "{direction} 反向信号，强度 {strength}",
    },
    "lifecycle.closed_by": {"en": "closed by {client_id}", "zh": "由 {client_id} 平仓"},
    "lifecycle.entry_canceled": {"en": "Entry canceled on request", "zh": "入场单已按请求撤销"},
    "lifecycle.close_failed": {"en": "Cannot close the position: act now", "zh": "无法平仓：请立即处理"},
    "lifecycle.close_failed_detail": {
        "en": "{attempts} market closes were rejected; {qty} still open",
        "zh": "{attempts} 次市价平仓被拒绝；仍有 {qty} 未平",
    },
    "lifecycle.no_targets": {"en": "Position too small for take-profits", "zh": "仓位太小，无法挂止盈单"},
    "lifecycle.no_targets_detail": {
        "en": "{qty} is below the minimum order quantity; only the stop protects it",
        "zh": "{qty} 低于最小下单数量；只有止损在保护",
    },
    "reconcile.adopted": {"en": "Adopted a position found on the exchange", "zh": "接管了交易所上发现的仓位"},
    "reconcile.adopted_detail": {
        "en": (
            "{direction} {qty} at {price}, recorded by nobody: protecting it with a stop at {stop} and the default "
            "take-profits"
        ),
        "zh": "{direction} {qty} @ {price}，无任何记录：以止损 {stop} 和默认止盈单保护",
    },
    "placement.refused": {
        "en": "Signal not traded: {direction} {strength}",
        "zh": "信号未交易：{direction} {strength}",
    },
    "placement.refused_detail": {"en": "{reason} ({code})", "zh": "{code}：{reason}"},
    "placement.no_reason": {"en": "no reason given", "zh": "未给出原因"},
    "placement.halted": {"en": "New entries halted", "zh": "已停止开新仓"},
    "refusal.invalid_signal": {"en": "invalid_signal", "zh": "信号无效"},
    "refusal.symbol_not_tradable": {"en": "symbol_not_tradable", "zh": "合约不可交易"},
    "refusal.symbol_busy": {"en": "symbol_busy", "zh": "该合约已有持仓或挂单"},
    "refusal.max_positions": {"en": "max_positions", "zh": "已达最大持仓数"},
    "refusal.daily_loss_limit": {"en": "daily_loss_limit", "zh": "已达每日亏损上限"},
    "refusal.insufficient_balance": {"en": "insufficient_balance", "zh": "余额不足"},
    "refusal.insufficient_margin": {"en": "insufficient_margin", "zh": "保证金不足"},
    "refusal.max_leverage": {"en": "max_leverage", "zh": "超过最大杠杆"},
    "refusal.max_notional": {"en": "max_notional", "zh": "超过最大仓位价值"},
    "refusal.below_min_order": {"en": "below_min_order", "zh": "低于最小下单量"},
    "refusal.halted": {"en": "halted", "zh": "已停止开新仓"},
    "refusal.no_monitor": {"en": "no_monitor", "zh": "无监控进程"},
    "refusal.stale_signal": {"en": "stale_signal", "zh": "信号已过期"},
    "refusal.max_new_positions": {"en": "max_new_positions", "zh": "已达本轮开仓上限"},
    "refusal.no_price": {"en": "no_price", "zh": "无标记价格"},
    "risk.rules_mismatch": {
        "en": "symbol rules are for {rules}, not {symbol}",
        "zh": "合约规则属于 {rules}，而不是 {symbol}",
    },
    "risk.not_perpetual": {
        "en": "{symbol} is not a trading USDT perpetual",
        "zh": "{symbol} 不是可交易的 USDT 永续合约",
    },
    "risk.unusable": {
        "en": "{symbol}: unusable price {price} or strength",
        "zh": "{symbol}：价格 {price} 或强度不可用",
    },
    "risk.busy_pending": {"en": "{symbol} already has an entry pending", "zh": "{symbol} 已有待成交的入场单"},
    "risk.busy_open": {"en": "{symbol} already has an open position", "zh": "{symbol} 已有持仓"},
    "risk.max_positions": {
        "en": "{count} positions and pending entries, limit {limit}",
        "zh": "{count} 个持仓和待成交入场单，上限 {limit}",
    },
    "risk.loss_figures": {
        "en": (
            "realised today {realised} USDT, open risk {risk} USDT (lost if the stops of {count} positions and "
            "pending entries are hit), unrealised {unrealised} USDT"
        ),
        "zh": (
            "今日已实现 {realised} USDT，未平风险 {risk} USDT（{count} 个持仓和待成交入场单的止损全部触发时的亏损），"
            "未实现 {unrealised} USDT"
        ),
    },
    "risk.loss_spent": {
        "en": "{symbol}: nothing is left of the daily loss limit of {limit} USDT: {figures}",
        "zh": "{symbol}：每日亏损上限 {limit} USDT 已用完：{figures}",
    },
    "risk.no_equity": {"en": "equity is {equity} USDT", "zh": "权益为 {equity} USDT"},
    "risk.no_margin": {"en": "no available balance for margin", "zh": "没有可用余额作保证金"},
    "risk.too_big": {
        "en": "{symbol}: the smallest order ({smallest} USDT) exceeds the maximum position size ({limit} USDT)",
        "zh": "{symbol}：最小订单（{smallest} USDT）超过最大仓位（{limit} USDT）",
    },
    "risk.loss_left": {
        "en": (
            "{symbol}: {headroom} USDT is left of the daily loss limit of {limit} USDT ({figures}); at this stop it "
            "allows {allowed} USDT, below the smallest order of {smallest} USDT"
        ),
        "zh": (
            "{symbol}：每日亏损上限 {limit} USDT 还剩 {headroom} USDT（{figures}）；按此止损只允许 {allowed} USDT，"
            "低于最小订单 {smallest} USDT"
        ),
    },
    "risk.cap": {
        "en": "{symbol}: the {cap} limit allows {allowed} USDT, below the smallest order of {smallest} USDT",
        "zh": "{symbol}：{cap}限制只允许 {allowed} USDT，低于最小订单 {smallest} USDT",
    },
    "cap.max_notional": {"en": "max_notional", "zh": "最大仓位价值"},
    "cap.risk": {"en": "risk", "zh": "单笔风险"},
    "cap.daily_loss": {"en": "daily_loss", "zh": "每日亏损"},
    "cap.margin": {"en": "margin", "zh": "保证金"},
    "cap.account_leverage": {"en": "account_leverage", "zh": "账户总杠杆"},
    "cap.max_qty": {"en": "max_qty", "zh": "最大下单量"},
    "placement.stale": {
        "en": "the signal's bar is older than the newest closed bar",
        "zh": "信号的K线早于最新收盘的K线",
    },
    "placement.cycle_limit": {
        "en": "this run opens at most {count} new positions",
        "zh": "本轮最多开 {count} 个新仓",
    },
    "placement.no_rules": {"en": "{symbol} is not in exchange info", "zh": "交易所信息中没有 {symbol}"},
    "placement.no_price": {"en": "no mark price for {symbol}", "zh": "{symbol} 没有标记价格"},
    "emergency.title": {"en": "Close-all: {reason}", "zh": "全部平仓：{reason}"},
    "emergency.closed": {"en": "Closed: {symbols}.", "zh": "已平仓：{symbols}。"},
    "emergency.nothing_open": {"en": "nothing was open", "zh": "无持仓"},
    "emergency.still_open": {"en": "STILL OPEN: {symbols}: act now.", "zh": "仍未平仓：{symbols}：请立即处理。"},
    "emergency.failed": {"en": "Failed: {failures}", "zh": "失败：{failures}"},
    "emergency.halted": {"en": "New entries are halted until 00:00 UTC.", "zh": "00:00 UTC 前停止开新仓。"},
    "emergency.not_recorded": {
        "en": "Nothing was recorded in the database ({why}). {advice}",
        "zh": "数据库中没有任何记录（{why}）。{advice}",
    },
    "emergency.advice": {
        "en": (
            "The monitor (or the reconcile flow) records the closes once the database is back. New entries were "
            "NOT halted: pause the trading-cycle schedule."
        ),
        "zh": "数据库恢复后，监控进程（或对账流程）会记录这些平仓。新开仓并未停止：请暂停交易周期的调度。",
    },
    "run.TimedOut": {"en": "timed out", "zh": "超时"},
    "run.FAILED": {"en": "failed", "zh": "失败"},
    "run.CRASHED": {"en": "crashed", "zh": "崩溃"},
    "run.CANCELLED": {"en": "was cancelled", "zh": "已取消"},
    "run.ended": {"en": "{flow} {outcome}", "zh": "{flow} {outcome}"},
    "run.detail": {"en": "{reason} (run {run}: {where})", "zh": "{reason}（运行 {run}：{where}）"},
    "run.no_reason": {"en": "no reason given", "zh": "未给出原因"},
    "health.seconds": {"en": "{n} s", "zh": "{n} 秒"},
    "health.minutes": {"en": "{n} min", "zh": "{n} 分钟"},
    "health.hours": {"en": "{n} h", "zh": "{n} 小时"},
    "health.positions_one": {"en": "{count} open position", "zh": "{count} 个持仓"},
    "health.positions_many": {"en": "{count} open positions", "zh": "{count} 个持仓"},
    "health.never_ran": {
        "en": "no monitor has ever run for this account (start `ats monitor`)",
        "zh": "此账户从未运行过监控进程（请启动 `ats monitor`）",
    },
    "health.last_seen": {
        "en": "last heartbeat {ago} ago from {name} ({role})",
        "zh": "最后一次心跳在 {ago} 前，来自 {name}（{role}）",
    },
    "health.lease_expired": {
        "en": "the leader's lease has expired (frozen, hung or cut off?); {seen}",
        "zh": "主进程的租约已过期（冻结、卡死或断线？）；{seen}",
    },
    "health.holder_silent": {
        "en": "the lease holder {leader} has no fresh heartbeat; {seen}",
        "zh": "租约持有者 {leader} 没有新的心跳；{seen}",
    },
    "health.none_active": {"en": "no active monitor; {seen}", "zh": "没有活动的监控进程；{seen}"},
    "health.no_monitor": {"en": "no monitor is running", "zh": "没有监控进程在运行"},
    "health.no_monitor_at_risk": {
        "en": "no monitor is running with {positions}",
        "zh": "没有监控进程在运行，有 {positions}",
    },
    "health.no_monitor_detail": {
        "en": "{why}. Stops are not moved and new entries are refused until one runs.",
        "zh": "{why}。在监控进程运行之前，止损不会移动，新开仓会被拒绝。",
    },
    "health.not_ready": {
        "en": "monitor not ready for {ago} with {positions}",
        "zh": "监控进程已 {ago} 未就绪，有 {positions}",
    },
    "health.not_ready_why": {"en": "not ready", "zh": "未就绪"},
    "health.not_ready_detail": {
        "en": "{name}: {why}. The exchange-side stops still protect the positions.",
        "zh": "{name}：{why}。交易所端的止损仍在保护持仓。",
    },
    "health.banned": {
        "en": "Binance banned this IP for {ago} (HTTP 418)",
        "zh": "币安封禁了此 IP {ago}（HTTP 418）",
    },
    "health.banned_at_risk": {
        "en": "Binance banned this IP for {ago} (HTTP 418) with {positions}",
        "zh": "币安封禁了此 IP {ago}（HTTP 418），有 {positions}",
    },
    "health.banned_detail": {
        "en": (
            "Until {until} no request reaches the exchange: stops cannot be moved or replaced and positions cannot "
            "be closed by the system; the stops already on the exchange still protect them. Requests went on after "
            "429 answers: look for 'rate limited by binance' in the logs."
        ),
        "zh": (
            "在 {until} 之前，任何请求都到不了交易所：系统无法移动或重挂止损，也无法平仓；交易所上已有的止损仍在"
            "保护持仓。收到 429 后请求仍在继续：请在日志中查找 'rate limited by binance'。"
        ),
    },
    "health.cycles_late": {
        "en": "no trading cycle completed in {ago}",
        "zh": "{ago} 内没有完成交易周期",
    },
    "health.cycles_late_detail": {
        "en": "{last}. Check the Prefect server, the worker and the trading-cycle schedule.",
        "zh": "{last}。请检查 Prefect 服务器、worker 和交易周期的调度。",
    },
    "health.last_cycle": {"en": "the last one ended {at}", "zh": "上一次结束于 {at}"},
    "health.no_cycle_yet": {"en": "none has completed yet", "zh": "尚未完成任何一次"},
    "health.recovered.monitor": {"en": "a monitor is active again", "zh": "监控进程已重新运行"},
    "health.recovered.monitor-ready": {"en": "the monitor is ready again", "zh": "监控进程已重新就绪"},
    "health.recovered.trading-cycles": {"en": "trading cycles complete again", "zh": "交易周期已恢复完成"},
    "health.recovered.exchange-ban": {
        "en": "the exchange ban has ended: requests reach Binance again",
        "zh": "交易所封禁已结束：请求已能到达币安",
    },
    "health.after": {"en": "after {ago}", "zh": "历时 {ago}"},
}


def say(language: Language, key: str, /, **values: object) -> str:
    """The catalogue's text `key` in `language` with `values` filled in."""
    return MESSAGES[key][language].format(**values)


@dataclass(frozen=True, slots=True)
class Text:
    """What to tell, not yet in a language: a catalogue id, its values and its parts (texts told inside it).

    Plain data both ways (ats.codec): an alert is stored with the message it queued."""

    key: str
    values: tuple[tuple[str, str], ...] = ()
    parts: tuple[tuple[str, Text], ...] = ()

    def __post_init__(self) -> None:
        if self.key not in MESSAGES:
            raise KeyError(f"no message {self.key!r} in the catalogue")


def text(key: str, /, **values: str | int | Decimal | Text) -> Text:
    """`Text(key)` with `values`: `text("lifecycle.fill", qty=qty, price=price)` (a number keeps its own digits)."""
    return Text(
        key,
        tuple((name, str(v)) for name, v in values.items() if not isinstance(v, Text)),
        tuple((name, v) for name, v in values.items() if isinstance(v, Text)),
    )


def data(value: str) -> Text:
    """A free-form value (an exchange's message, a reason given by a person) told as it came."""
    return text("text.data", text=value)


def say_text(language: Language, what: Text) -> str:
    """`what` in `language`, its parts told in the same language."""
    return say(language, what.key, **dict(what.values), **{k: say_text(language, v) for k, v in what.parts})
