import { randomUUID } from "node:crypto";
import { DestroyJobData, HostId, isoNow, type JobData, parseOrThrow, VirtfleetError, VmName } from "@virtfleet/core";
import type { HostView } from "../hosts/host-registry.js";
import type { JobHandle } from "../records/job-handle.js";
import type { ProducerContext } from "./context.js";
import { enqueue } from "./enqueue.js";

export interface DestroyOptions {
  /** The host to destroy on when the fleet does not know the VM. */
  host?: string;
  /** Only a VM of this tenant (others are VM_NOT_FOUND). */
  tenant?: string;
  callbackUrl?: string;
}

/** Destroys a VM wherever it lives. Destroying a VM that is gone succeeds. */
export async function destroyVm(
  ctx: ProducerContext,
  nameInput: unknown,
  options: DestroyOptions = {},
): Promise<JobHandle> {
  const name = parseOrThrow(VmName, nameInput, "name");
  const record = await ctx.vms.get(name);
  if (options.tenant !== undefined && record?.tenant !== options.tenant) {
    throw new VirtfleetError("VM_NOT_FOUND", `no VM "${name}"`, { field: "name" });
  }
  let hostId = record?.hostId;
  if (hostId === undefined || hostId === "") {
    if (options.host !== undefined) hostId = parseOrThrow(HostId, options.host, "host");
    else {
      const up = (await ctx.hosts.list()).filter((h) => h.up);
      if (up.length !== 1) {
        throw new VirtfleetError("VM_NOT_FOUND", `the fleet knows no VM "${name}"; name its host with --host`, {
          field: "name",
        });
      }
      hostId = (up[0] as HostView).status.hostId;
    }
  }
  const jobId = `destroy-${randomUUID()}`;
  if (record !== undefined) await ctx.vms.setState(name, "destroying");
  const data: JobData = DestroyJobData.parse({
    kind: "destroy",
    jobId,
    hostId,
    name,
    requestedAt: isoNow(),
  });
  await enqueue(ctx, data, name, {
    ...(options.tenant === undefined ? {} : { tenant: options.tenant }),
    ...(options.callbackUrl === undefined ? {} : { callbackUrl: options.callbackUrl }),
  });
  return ctx.job(jobId);
}
