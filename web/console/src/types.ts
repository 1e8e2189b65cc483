// The API's shapes, as far as the console reads them (openapi/openapi.yaml
// is the full contract).

export interface Event {
  event: string; event_id: string; event_version: number; decider: string; decider_id: string;
  data: unknown; metadata?: Record<string, unknown>; tags?: string[];
  command_id: string; previous_id: string | null; final: boolean; created_at: string; offset: number;
}
export interface EventPage { events: Event[]; next_after: number | null }

export interface Dispatcher {
  dispatcher_id: string; host: string; pid: number; metrics_addr: string; version: string;
  started_at: string; last_seen_at: string; interval_ms: number; healthy: boolean;
}
export interface Status {
  access: "read-write" | "read-only"; time: string;
  log: { last_offset: number; events_estimate: number };
  dispatchers: Dispatcher[];
}

export interface PartitionError { decider: string; decider_id: string; error: string; at: string }
export interface ViewStatus {
  partitions: number; partitions_behind: number; events_pending: number; partitions_leased: number;
  partitions_parked: number; partitions_failing?: number; last_error: PartitionError | null;
}
export interface View {
  view: string; start_at: string; lock_timeout_s: number; pooling_delay_s: number | null;
  polling_delay_s?: number | null; edge_function_url: string | null;
  deciders?: string[] | null; events?: string[] | null;
  dispatch_disabled_at?: string; dispatch_disabled_reason?: string;
  created_at: string; updated_at: string; status: ViewStatus;
}

export interface Partition {
  view?: string; decider: string; decider_id: string; acked_offset: number; head_offset: number;
  events_pending: number; leased_until: string | null; retry_at: string | null; attempts: number;
  parked: boolean; last_error: string | null; last_status: number | null; last_error_at: string | null;
}
export interface PartitionDetail extends Partition { next_event: Event | null }
export interface PartitionPage { partitions: Partition[]; next_after: string | null }

export interface Attempt {
  at: string; kind?: string; event_id: string | null; offset: number | null; duration_ms: number;
  status: number | null; error: string | null; response: string | null;
}

export interface EventType { event: string; event_version: number; description: string }
export interface Decider { decider: string; events: EventType[] }
