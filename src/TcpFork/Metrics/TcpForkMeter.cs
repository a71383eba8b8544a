using System.Diagnostics.Metrics;
using System.Reflection;

namespace TcpFork;

/// <summary>
/// The counters for <see cref="System.Diagnostics.Metrics"/>: a <see cref="Meter"/> named
/// <c>TcpFork</c> with observable instruments only. Their callbacks read the parent's counter block and
/// run on the collector's thread (a MeterListener's, OpenTelemetry's exporter's), never in the parent's
/// loop, which only does its plain increments; nothing is recorded per connection. Useful in spawn mode:
/// in fork mode the parent must stay one thread, so no in-process collector can run (use <c>--metrics</c>).
/// The lifetime histogram is not published here (an observable instrument cannot be a histogram).
/// </summary>
internal sealed unsafe class TcpForkMeter : IDisposable
{
    public const string Name = "TcpFork";

    /// <summary>The library's version (its informational version without a source revision).</summary>
    public static string Version { get; } =
        (typeof(TcpForkMeter).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0").Split('+')[0];

    private readonly Meter _meter;

    public TcpForkMeter(Counters counters)
    {
        Counters c = counters;
        _meter = new Meter(Name, Version);
        _meter.CreateObservableCounter("tcpfork.connections", () => c.Data->Accepted, "{connection}", "Connections accepted, those refused afterwards included.");
        _meter.CreateObservableCounter("tcpfork.connections.denied", () => Denied(c.Data), "{connection}", "Connections refused before a child was made, by reason.");
        _meter.CreateObservableCounter("tcpfork.proxy.header.failures", () => ProxyFailures(c.Data), "{connection}", "Connections closed for their PROXY header, by reason.");
        _meter.CreateObservableUpDownCounter("tcpfork.connections.active", () => c.Data->Active, "{connection}", "Children serving a connection now.");
        _meter.CreateObservableCounter("tcpfork.children.ended", () => Ended(c.Data), "{process}", "Children reaped, by how they ended.");
        _meter.CreateObservableCounter("tcpfork.launch.failures", () => c.Data->LaunchFailures, "{connection}", "Connections closed because no child could be made.");
        _meter.CreateObservableCounter("tcpfork.accept.failures", () => c.Data->AcceptFailures, "{error}", "accept(2) failures (EAGAIN aside).");
        _meter.CreateObservableCounter("tcpfork.backoffs", () => c.Data->Backoffs, "{pause}", "Pauses in accepting after a resource error.");
    }

    private static Measurement<long>[] Denied(MetricsData* d) =>
    [
        new(d->Denied[(int)Verdict.DenyRule], new KeyValuePair<string, object?>("reason", "rule")),
        new(d->Denied[(int)Verdict.DenyPerIp], new KeyValuePair<string, object?>("reason", "max-per-ip")),
        new(d->Denied[(int)Verdict.DenyRate], new KeyValuePair<string, object?>("reason", "rate")),
        new(d->Denied[(int)Verdict.DenyVerify], new KeyValuePair<string, object?>("reason", "verify")),
        new(d->Denied[(int)Verdict.DenyTableFull], new KeyValuePair<string, object?>("reason", "table-full")),
    ];

    private static Measurement<long>[] ProxyFailures(MetricsData* d) =>
    [
        new(d->ProxyFailures[(int)ProxyFailure.Invalid], new KeyValuePair<string, object?>("reason", "invalid")),
        new(d->ProxyFailures[(int)ProxyFailure.Timeout], new KeyValuePair<string, object?>("reason", "timeout")),
        new(d->ProxyFailures[(int)ProxyFailure.Eof], new KeyValuePair<string, object?>("reason", "eof")),
        new(d->ProxyFailures[(int)ProxyFailure.Untrusted], new KeyValuePair<string, object?>("reason", "untrusted")),
        new(d->ProxyFailures[(int)ProxyFailure.Stopping], new KeyValuePair<string, object?>("reason", "stopping")),
        new(d->ProxyFailures[(int)ProxyFailure.Error], new KeyValuePair<string, object?>("reason", "error")),
    ];

    private static Measurement<long>[] Ended(MetricsData* d) =>
    [
        new(d->ExitZero, new KeyValuePair<string, object?>("class", "exit0")),
        new(d->ExitNonzero, new KeyValuePair<string, object?>("class", "exit_nonzero")),
        new(d->Signalled, new KeyValuePair<string, object?>("class", "signal")),
    ];

    public void Dispose() => _meter.Dispose();
}
