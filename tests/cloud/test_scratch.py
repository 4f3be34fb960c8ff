import time
from conftest import MAIN_TEMPLATE, EXAMPLES, example_parameters

def test_x(aws):
    cf = aws("cloudformation")
    params = example_parameters(EXAMPLES[2])
    cf.create_stack(StackName="s", TemplateBody=MAIN_TEMPLATE.read_text(), Parameters=params, Capabilities=["CAPABILITY_IAM"])
    for _ in range(60):
        st = cf.describe_stacks(StackName="s")["Stacks"][0]
        if not st["StackStatus"].endswith("IN_PROGRESS"): break
        time.sleep(1)
    print(st["StackStatus"], st.get("StackStatusReason"))
    for r in cf.list_stack_resources(StackName="s")["StackResourceSummaries"]:
        print(r["LogicalResourceId"], r["ResourceType"], r["ResourceStatus"], r.get("PhysicalResourceId"))
    for e in cf.describe_stack_events(StackName="s")["StackEvents"][:5]:
        print(e)
