import type { Config } from '../config/schema.ts';
import { connectWarnings, type PortRange } from '../config/tunnels.ts';
import type { SniRouteConfig } from '../config/edge.ts';

function portText(r: PortRange): string {
  return r.first === r.last ? String(r.first) : `${r.first}-${r.last}`;
}

function limitsText(l: {
  max_connections: number;
  max_connections_per_client: number;
  accept_queue_size: number;
}): string {
  if (l.max_connections === 0 && l.max_connections_per_client === 0) return 'max_connections=unlimited';
  return `max_connections=${l.max_connections || 'unlimited'} per_client=${l.max_connections_per_client || 'unlimited'} accept_queue=${l.accept_queue_size}`;
}

function sniText(routes: readonly SniRouteConfig[]): string {
  return routes
    .map(
      (r) => `${(r.server_names ?? ['*any*']).join('|')}${r.alpn ? ` alpn=${r.alpn.join('|')}` : ''} -> ${r.cluster}`,
    )
    .join('; ');
}

function hp(a: { host: string; port: number }): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** `muxgate check` output: the resolved listeners, routes and clusters, with defaults filled in. */
export function describeConfig(c: Config): string {
  const lines: string[] = ['config ok', ''];
  const warnings: string[] = [];
  lines.push(`workers: ${c.workers}   drain_timeout: ${c.drain_timeout}ms   log_level: ${c.log_level}`);
  lines.push(`admin: ${c.admin === false ? 'off' : hp(c.admin.address)}`);
  lines.push(`access_log: ${c.access_log.enabled ? c.access_log.path : 'off'}`);
  lines.push('', 'listeners:');
  for (const l of c.listeners) {
    if (l.protocol === 'tcp') {
      lines.push(
        `  ${l.name}  ${hp(l.address)}  tcp  -> ${l.cluster ?? '(sni routes only)'}  idle_timeout=${l.idle_timeout}ms connect_attempts=${l.connect_attempts} ${limitsText(l)}`,
      );
      if (l.sni_routes !== undefined) {
        lines.push(`    sni_routes: ${sniText(l.sni_routes)}  sni_timeout=${l.sni_timeout}ms`);
      }
      if (l.proxy_protocol !== undefined)
        lines.push(`    proxy_protocol: trusted=${l.proxy_protocol.trusted.join(',')}`);
      continue;
    }
    const tls = l.tls === undefined ? '' : ` tls(${l.tls.certificates.length} cert, min ${l.tls.min_version})`;
    lines.push(
      `  ${l.name}  ${hp(l.address)}  ${l.protocol}${tls}  max_header_bytes=${l.max_header_bytes} header_timeout=${l.header_timeout}ms idle_timeout=${l.idle_timeout}ms ${limitsText(l)}`,
    );
    if (l.passthrough !== undefined) lines.push(`    passthrough: ${sniText(l.passthrough)}`);
    if (l.proxy_protocol !== undefined) lines.push(`    proxy_protocol: trusted=${l.proxy_protocol.trusted.join(',')}`);
    if (l.connect !== undefined) {
      const rules = l.connect.allow.map((r) => `${r.cidr ?? r.host} ${r.ports.map(portText).join(',')}`);
      lines.push(
        `    connect: ${rules.join('; ')}${l.connect.users ? ` users=${l.connect.users.length}` : ''}${l.connect.udp ? ' udp' : ''}`,
      );
      warnings.push(...connectWarnings(l.name, l.connect));
    }
    l.routes.forEach((r, i) => {
      const m = r.match;
      const parts: string[] = [];
      if (m?.host) parts.push(`host=${m.host.join('|')}`);
      if (m?.path)
        parts.push(
          `path ${Object.entries(m.path)
            .map(([k, v]) => `${k}=${v}`)
            .join('')}`,
        );
      if (m?.methods) parts.push(`methods=${m.methods.join('|')}`);
      if (m?.headers) parts.push(`headers=${m.headers.map((h) => h.name).join(',')}`);
      const rw = [
        r.host_rewrite ? `host_rewrite=${r.host_rewrite}` : '',
        r.prefix_rewrite !== undefined ? `prefix_rewrite=${r.prefix_rewrite}` : '',
      ]
        .filter(Boolean)
        .join(' ');
      lines.push(
        `    [${i}] ${r.name ?? ''} ${parts.length ? parts.join(' ') : 'any request'} -> ${r.cluster} ${rw}`.trimEnd(),
      );
      const rt = r.retry;
      if (rt !== undefined) {
        lines.push(
          `        retry: attempts=${rt.attempts} on=${rt.on.join(',')}${rt.statuses.length ? ` statuses=${rt.statuses.join(',')}` : ''} per_try_timeout=${rt.per_try_timeout === undefined ? 'response_timeout' : `${rt.per_try_timeout}ms`} backoff=${rt.backoff.base}-${rt.backoff.max}ms budget=${rt.budget.ratio}/min ${rt.budget.min_retries} retry_buffer_bytes=${rt.retry_buffer_bytes}`,
        );
      }
      const rl = r.rate_limit;
      if (rl !== undefined) {
        lines.push(
          `        rate_limit: ${rl.rate}/s burst=${rl.burst ?? Math.max(1, Math.ceil(rl.rate))} key=${rl.key} store=${storeName(rl.store)} ${rl.on_store_error}`,
        );
      }
      const id = r.idempotency;
      if (id !== undefined) {
        lines.push(
          `        idempotency: store=${storeName(id.store)} ttl=${id.ttl}ms lock_ttl=${id.lock_ttl}ms max_body_bytes=${id.max_body_bytes} max_request_bytes=${id.max_request_bytes}${id.key_scope ? ` key_scope=${id.key_scope}` : ''} ${id.on_store_error}`,
        );
      }
    });
  }
  lines.push('', 'clusters:');
  for (const [name, cl] of Object.entries(c.clusters)) {
    const p = cl.pool;
    lines.push(
      `  ${name}  protocol=${cl.protocol}${cl.h2c ? ' h2c' : ''}${cl.tls === undefined ? '' : ` tls${cl.tls.insecure_skip_verify ? '(INSECURE: no verification)' : ''}`}  lb=${cl.lb}${cl.hash_key ? ` hash_key=${JSON.stringify(cl.hash_key)}` : ''}  response_timeout=${cl.response_timeout}ms`,
    );
    lines.push(
      `    pool: max_connections=${p.max_connections} max_pending=${p.max_pending} pending_timeout=${p.pending_timeout}ms idle_timeout=${p.idle_timeout}ms connect_timeout=${p.connect_timeout}ms max_requests_per_connection=${p.max_requests_per_connection || 'unlimited'}`,
    );
    const b = cl.circuit_breakers;
    const limits = Object.entries(b).filter(([, v]) => v > 0);
    if (limits.length) lines.push(`    circuit_breakers: ${limits.map(([k, v]) => `${k}=${v}`).join(' ')}`);
    const hc = cl.health_check;
    if (hc !== undefined) {
      lines.push(
        `    health_check: ${hc.type}${hc.type === 'http' ? ` ${hc.path}${hc.protocol ? ` ${hc.protocol}` : ''} expect=${hc.expected_statuses.join(',')}` : ''} every ${hc.interval}ms (+${hc.jitter}ms) timeout=${hc.timeout}ms healthy=${hc.healthy_threshold} unhealthy=${hc.unhealthy_threshold}`,
      );
    }
    if (cl.source_addresses !== undefined) {
      const range = cl.source_port_range;
      lines.push(
        `    source_addresses: ${cl.source_addresses.join(', ')}  source_port_range=${range ? `${range.first}-${range.last}` : 'kernel'} port_cooling=${cl.port_cooling === undefined ? 'tcp_fin_timeout' : `${cl.port_cooling}ms`} budget_warn_ratio=${cl.budget_warn_ratio}`,
      );
    }
    for (const e of cl.endpoints) lines.push(`    endpoint ${hp(e)} weight=${e.weight}`);
  }
  if (warnings.length > 0) lines.push('', 'warnings:', ...warnings.map((w) => `  - ${w}`));
  return `${lines.join('\n')}\n`;
}

/** A store as `check` prints it: a Redis URL's password hidden. */
function storeName(store: string): string {
  return store.replace(/\/\/([^@/]*)@/, '//***@');
}
