import { Aspects, CfnResource } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks, SuppressionIgnoreAlways } from 'cdk-nag';
import { synth } from './helpers';

const ALL_OPTIONS = {
  iamAuthentication: true,
  secretArns: ['arn:aws:secretsmanager:us-east-1:123456789012:secret:AmazonMSK_kafka-esm-AbCdEf'],
  secretKmsKeyArns: ['arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555'],
  vpcEndpoints: true,
  onFailureBucketArns: ['arn:aws:s3:::failed-orders'],
};

function findings(stack: Parameters<typeof Annotations.fromStack>[0]): string[] {
  const annotations = Annotations.fromStack(stack);
  return [
    ...annotations.findError('*', Match.stringLikeRegexp('AwsSolutions-.*')),
    ...annotations.findWarning('*', Match.stringLikeRegexp('AwsSolutions-.*')),
  ].map((m) => `${m.id}: ${String(m.entry.data).split('\n')[0]}`);
}

describe('cdk-nag AwsSolutions', () => {
  test.each([
    ['the example configuration', {}],
    ['every option on', ALL_OPTIONS],
  ])('passes with %s', (_name, context) => {
    const { stack } = synth(context, { nag: true });
    expect(findings(stack)).toEqual([]);
  });

  test('finds only the justified IAM wildcards when suppressions are ignored', () => {
    const { app, stack } = synth(ALL_OPTIONS);
    Aspects.of(app).add(
      new AwsSolutionsChecks({ suppressionIgnoreCondition: new SuppressionIgnoreAlways('show every finding') }),
    );
    const ids = findings(stack).map((f) => f.replace(/^.*?(AwsSolutions-[A-Za-z0-9]+(\[[^\]]*\])?).*$/, '$1'));
    expect([...new Set(ids)].sort()).toEqual([
      'AwsSolutions-IAM5[Resource::*]',
      'AwsSolutions-IAM5[Resource::arn:aws:kafka:us-east-1:123456789012:group/example/01234567-89ab-cdef-0123-456789abcdef-1/*]',
      'AwsSolutions-IAM5[Resource::arn:aws:kafka:us-east-1:123456789012:topic/example/01234567-89ab-cdef-0123-456789abcdef-1/*]',
      'AwsSolutions-IAM5[Resource::arn:aws:lambda:us-east-1:123456789012:function:my-fn:*]',
      'AwsSolutions-IAM5[Resource::arn:aws:s3:::failed-orders/*]',
      'AwsSolutions-SQS3',
    ]);
  });

  test('every suppression says why', () => {
    const { stack } = synth(ALL_OPTIONS);
    const suppressions = collectSuppressions(stack.kafkaEsm.role);
    expect(new Set(suppressions.map((s) => s.id))).toEqual(new Set(['AwsSolutions-IAM5']));
    expect(suppressions.length).toBeGreaterThan(0);
    for (const s of suppressions) expect(s.reason.length).toBeGreaterThanOrEqual(60);
  });
});

/** The cdk-nag suppressions recorded on the CloudFormation resources under `scope`. */
function collectSuppressions(scope: IConstruct): { id: string; reason: string }[] {
  const out: { id: string; reason: string }[] = [];
  for (const construct of scope.node.findAll()) {
    if (!(construct instanceof CfnResource)) continue;
    const metadata = construct.getMetadata('cdk_nag') as { rules_to_suppress?: { id: string; reason: string }[] } | undefined;
    out.push(...(metadata?.rules_to_suppress ?? []));
  }
  return out;
}
