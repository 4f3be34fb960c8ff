// Runs cdk-nag's rule packs on plain CloudFormation templates: AWS Solutions (the
// Well-Architected checks) and NIST 800-53 rev 5. Each template is read with CfnInclude, so a
// resource's own `Metadata: cdk_nag: rules_to_suppress: [{id, reason}]` is what cdk-nag reads
// to suppress a finding there, with its reason.
//
//   node tools/nag/nag.mjs TEMPLATE.yaml ...
//
// Prints one JSON object: {"<template>": {"findings": [{"rule", "level", "resource", "info"}],
// "suppressed": [{"rule", "resource", "reason"}]}}. Exit code 0 either way (the tests judge);
// 2 when a template cannot be read.
import { App, Aspects, Stack } from 'aws-cdk-lib';
import { CfnInclude } from 'aws-cdk-lib/cloudformation-include';
import { AwsSolutionsChecks, NIST80053R5Checks } from 'cdk-nag';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const out = {};
for (const file of process.argv.slice(2)) {
  const outdir = mkdtempSync(join(tmpdir(), 'nag-'));
  try {
    const app = new App({ outdir });
    const stack = new Stack(app, 'Checked');
    const included = new CfnInclude(stack, 'T', { templateFile: file });
    Aspects.of(app).add(new AwsSolutionsChecks({ reports: false }));
    Aspects.of(app).add(new NIST80053R5Checks({ reports: false }));
    const assembly = app.synth();
    const messages = assembly.getStackArtifact(stack.artifactId).messages;
    const findings = [];
    for (const m of messages) {
      if (m.level !== 'error' && m.level !== 'warning') continue;
      const text = String(m.entry.data);
      // "AwsSolutions-IAM5[Action::s3:*]: The IAM entity contains wildcard permissions ..."
      const rule = (text.match(/^((?:AwsSolutions|NIST\.800\.53\.R5)-[A-Za-z0-9]+(?:\[[^\]]*\])?):/) || [])[1];
      if (!rule) continue;
      findings.push({ rule, level: m.level, resource: m.id.split('/').slice(3, 4).join('/') || m.id,
                      info: text.slice(rule.length + 1).trim().split('\n')[0] });
    }
    const suppressed = [];
    for (const child of included.node.findAll()) {
      const rules = child.cfnOptions?.metadata?.cdk_nag?.rules_to_suppress ?? [];
      for (const r of rules) suppressed.push({ rule: r.id, resource: child.node.id, reason: r.reason });
    }
    out[file] = { findings, suppressed };
  } catch (e) {
    process.stderr.write(`nag: ${file}: ${e.message}\n`);
    process.exitCode = 2;
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}
process.stdout.write(JSON.stringify(out, null, 1) + '\n');
